/**
 * What the P11 child process imports on the tidelog side, bundled by the bench
 * into one ES module (sql.js and signals external), as an app meets a built
 * library: createStore, the file storage adapter and the bench schema.
 */

export { fileStorage } from '../adapters/filesystem.js'
export { createStore, sql } from '../src/index.js'
export { benchSchema } from './fixtures.js'
