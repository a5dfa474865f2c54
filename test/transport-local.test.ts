import { localTransport } from 'tidelog'
import { runTransportConformance } from 'tidelog/testing'

runTransportConformance(
  'localTransport',
  ({ backend }) => ({
    transport: (options) => localTransport(backend, options),
    teardown: async () => {},
  }),
  { inProcess: true },
)
