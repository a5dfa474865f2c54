export { memoryBackend } from '../memory-backend.js'
export { fileBackend, type FileBackend, type FileBackendOptions, type FileBackendStats } from './file-backend.js'
export {
  createSyncServer,
  createHttpHandler,
  attachWebSocket,
  type SyncServer,
  type SyncServerOptions,
  type ServerLimits,
  type AuthenticateContext,
} from './sync-server.js'
export type { SyncBackend } from '../transport.js'
