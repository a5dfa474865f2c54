/** True when some dist/ output is missing or older than the newest source. */
export function distIsStale(): boolean
/** Runs every build of rollup.config.mjs in order, as `rollup -c` does. Throws on the first failure. */
export function build(options?: { log?: (line: string) => void }): Promise<void>
/** Builds only when dist/ is stale; resolves whether it built. */
export function ensureBuilt(options?: { log?: (line: string) => void }): Promise<boolean>
