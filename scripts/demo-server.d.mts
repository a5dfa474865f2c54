/** A running demo server. */
export interface DemoServer {
  readonly url: string
  readonly port: number
  readonly dataDir: string
  /** Closes sockets, the server and the file backend; the data stays in `dataDir`. */
  close(): Promise<void>
}
/** Starts the demo server (needs a built dist/); `port: 0` picks a free port. */
export function startDemoServer(options?: { port?: number; host?: string; dataDir?: string }): Promise<DemoServer>
