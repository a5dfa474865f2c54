export { memoryBackend } from '../backends/memory.js'
export { fileBackend, type FileBackend, type FileBackendOptions, type FileBackendStats } from '../backends/file.js'
export {
  postgresBackend,
  migratePostgres,
  POSTGRES_SCHEMA_VERSION,
  type PostgresBackend,
  type PostgresBackendOptions,
  type PostgresBackendStats,
  type PostgresConnection,
  type PostgresPool,
  type PostgresPoolClient,
  type PostgresQueryResult,
} from '../backends/postgres.js'
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
