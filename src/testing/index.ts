export {
  runBackendConformance,
  backendConformanceCases,
  type BackendConformanceOptions,
  type BackendConformanceCase,
  type BackendCaseContext,
  type MakeBackend,
} from './backend-conformance.js'
export { runTransportConformance, type TransportConformanceOptions } from './transport-conformance.js'
export { runStorageConformance, type StorageConformanceOptions } from './storage-conformance.js'
