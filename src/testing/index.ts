export {
  type BackendCaseContext,
  type BackendConformanceCase,
  type BackendConformanceOptions,
  backendConformanceCases,
  type MakeBackend,
  runBackendConformance,
} from './backend-conformance.js'
export { type MakeStorage, runStorageConformance, type StorageConformanceOptions } from './storage-conformance.js'
export {
  type MakeTransportSetup,
  runTransportConformance,
  type TransportConformanceCase,
  type TransportConformanceOptions,
  type TransportConformanceSetup,
  type TransportKit,
  type TransportKitOptions,
  transportConformanceCases,
} from './transport-conformance.js'
