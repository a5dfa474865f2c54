export declare const P9_LIMIT_BYTES: number
export declare const P9_BUDGET_BYTES: number
type Size = { min: number; gzip: number }
export declare function measureP9(): Promise<{
  core: Size
  coreWebsocket: Size
  /** `imports`: the bare imports left in the bundle (what the app's bundler adds). */
  coreWebsocketIndexedDb: Size & { imports: string[] }
  everyCoreExportWebsocketIndexedDb: Size
  limitGzip: number
  budgetGzip: number
  pass: boolean
}>
/** The P9 figure alone (one build). */
export declare function measureP9Bundle(): Promise<Size & { imports: string[] }>
