/**
 * PostgreSQL for tests: the server CI runs (127.0.0.1:5432, trust auth,
 * database `test`, user `postgres`; override with TIDELOG_TEST_POSTGRES), a
 * fresh schema per test file, and pools whose connections a test can kill.
 */
import pg from 'pg'

export const POSTGRES_URL = process.env.TIDELOG_TEST_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432/test'

/** Why PostgreSQL cannot be used (printed by the skipping test), or undefined when it answers. */
export async function postgresUnavailable(): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 3000 })
  client.on('error', () => {})
  try {
    await client.connect()
    await client.query('SELECT 1')
    return undefined
  } catch (error) {
    return `no PostgreSQL answers at ${POSTGRES_URL} (${(error as Error).message}); start it with pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`
  } finally {
    await client.end().catch(() => {})
  }
}

let counter = 0

/** A schema name no other run uses. */
export function freshSchemaName(prefix = 'tl_test'): string {
  return `${prefix}_${process.pid}_${Date.now().toString(36)}_${counter++}`
}

/** Runs one statement on a short-lived connection. */
export async function sql(text: string, values?: unknown[]): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: POSTGRES_URL })
  client.on('error', () => {})
  await client.connect()
  try {
    return await client.query(text, values)
  } finally {
    await client.end()
  }
}

export const dropSchema = (schema: string) => sql(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)

/** A pool whose connections carry `name` as application_name, so that `killConnections(name)` can cut them server-side. */
export function namedPool(name: string, max = 4): pg.Pool {
  const pool = new pg.Pool({ connectionString: POSTGRES_URL, application_name: name, max })
  pool.on('error', () => {})
  return pool
}

/** Terminates every connection whose application_name is `name`, as a crash or a network cut would; resolves with how many. */
export async function killConnections(name: string): Promise<number> {
  const { rows } = await sql('SELECT count(*)::int AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1) t', [name])
  return rows[0].n as number
}
