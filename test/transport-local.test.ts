import { localTransport } from 'tidelog'
import { memoryBackend } from 'tidelog/server'
import { runTransportConformance } from 'tidelog/testing'

runTransportConformance('localTransport', () => {
  const backend = memoryBackend()
  return {
    backend,
    transport: () => localTransport(backend),
    teardown: () => backend.close(),
  }
}, { inProcess: true })
