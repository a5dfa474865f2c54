import { memoryBackend } from 'tidelog/server'
import { runBackendConformance } from 'tidelog/testing'

runBackendConformance('memoryBackend', () => memoryBackend())
