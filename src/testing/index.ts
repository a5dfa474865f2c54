export {
  runBackendConformance,
  backendConformanceCases,
  type BackendConformanceOptions,
  type BackendConformanceCase,
  type BackendCaseContext,
  type MakeBackend,
} from './backend-conformance.js'
export {
  runTransportConformance,
  transportConformanceCases,
  type TransportConformanceOptions,
  type TransportConformanceSetup,
  type TransportConformanceCase,
  type TransportKit,
  type TransportKitOptions,
  type MakeTransportSetup,
} from './transport-conformance.js'
export { runStorageConformance, type StorageConformanceOptions, type MakeStorage } from './storage-conformance.js'
