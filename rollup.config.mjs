// One config: every entry of the package → ESM (.js) + CJS (.cjs) + types
// (.d.ts, and .d.cts for `require`), plus the self-contained <script> bundle.
import { copyFileSync, mkdirSync, readFileSync, rmSync } from 'node:fs'
import { builtinModules, createRequire } from 'node:module'
import { dirname, isAbsolute } from 'node:path'
import { fileURLToPath } from 'node:url'
import commonjs from '@rollup/plugin-commonjs'
import { nodeResolve } from '@rollup/plugin-node-resolve'
import terser from '@rollup/plugin-terser'
import typescript from '@rollup/plugin-typescript'
import { dts } from 'rollup-plugin-dts'

const root = dirname(fileURLToPath(import.meta.url))
const require = createRequire(import.meta.url)

/**
 * dist name (without extension) → source, read from package.json `exports`:
 * every condition block there that names its source (`tidelog-source`, the
 * condition tsconfig.json and vitest.config.ts resolve with) and its ESM file
 * (`import.default`, ./dist/<name>.js) is one entry.
 */
export const entries = {}
const collectEntries = (target) => {
  if (target === null || typeof target !== 'object') return
  const source = target['tidelog-source']
  const file = target.import?.default
  if (typeof source === 'string' && typeof file === 'string') {
    const name = /^\.\/dist\/(.+)\.js$/.exec(file)?.[1]
    if (name === undefined) throw new Error(`package.json exports: ${file} is not ./dist/<name>.js`)
    entries[name] = source.slice(2)
  }
  for (const value of Object.values(target)) collectEntries(value)
}
collectEntries(JSON.parse(readFileSync(`${root}/package.json`, 'utf8')).exports)

// Bare imports stay imports in ESM/CJS: the app's bundler or Node resolves
// them, and @preact/signals-core must be the app's one copy (a second copy
// would not track inside the app's effect()).
const builtins = new Set(builtinModules)
const external = (id) => id.startsWith('node:') || builtins.has(id) || (/^[@a-z]/i.test(id) && !isAbsolute(id))

// `check: false` where another build of this config already type-checked the same program.
const ts = ({ check = true } = {}) =>
  typescript({ tsconfig: './tsconfig.build.json', noEmitOnError: true, outputToFilesystem: false, ...(check ? {} : { noCheck: true }) })

/**
 * Puts sql.js's browser wasm next to every chunk that refers to it with
 * `new URL('./sql-wasm.wasm', import.meta.url)` (src/database.ts), wherever
 * rollup placed that module: the app's bundler follows that URL and emits the file.
 */
const wasmNextToChunks = () => ({
  name: 'wasm-next-to-chunks',
  generateBundle(_options, bundle) {
    const dirs = new Set()
    for (const chunk of Object.values(bundle)) {
      if (chunk.type === 'chunk' && chunk.code.includes("'./sql-wasm.wasm'")) dirs.add(dirname(chunk.fileName))
    }
    const source = readFileSync(require.resolve('sql.js/dist/sql-wasm-browser.wasm'))
    for (const dir of dirs) this.emitFile({ type: 'asset', fileName: dir === '.' ? 'sql-wasm.wasm' : `${dir}/sql-wasm.wasm`, source })
  },
})

// Shared chunks (errors, protocol, ...) are one module for every entry, so that
// an error thrown by a transport is an instance of the class `tidelog` exports.
const library = {
  input: entries,
  external,
  plugins: [ts(), wasmNextToChunks()],
  output: [
    { dir: 'dist', format: 'es', entryFileNames: '[name].js', chunkFileNames: 'chunks/[name]-[hash].js', sourcemap: true },
    {
      dir: 'dist',
      format: 'cjs',
      entryFileNames: '[name].cjs',
      chunkFileNames: 'chunks/[name]-[hash].cjs',
      exports: 'named',
      sourcemap: true,
    },
  ],
}

// .d.ts for `import`, .d.cts for `require`: a CJS consumer given ESM-flavoured
// types would be told the package is ESM only.
const types = {
  input: entries,
  external,
  plugins: [dts({ tsconfig: './tsconfig.build.json' })],
  output: ['d.ts', 'd.cts'].map((ext) => ({
    dir: 'dist',
    format: 'es',
    entryFileNames: `[name].${ext}`,
    chunkFileNames: `chunks/[name]-[hash].${ext}`,
  })),
}

/**
 * Copies the wasm of sql.js's browser build (the glue the bundle carries) next
 * to the script bundle, where the bundle looks for it by default, under the
 * name the docs use.
 */
const copySqlWasm = () => ({
  name: 'copy-sql-wasm',
  writeBundle() {
    const wasm = require.resolve('sql.js/dist/sql-wasm-browser.wasm')
    mkdirSync(`${root}/dist`, { recursive: true })
    copyFileSync(wasm, `${root}/dist/sql-wasm.wasm`)
  },
})

/** Empties dist/ before the first build writes to it, so that no stale chunk survives. */
const cleanDist = () => ({
  name: 'clean-dist',
  buildStart() {
    rmSync(`${root}/dist`, { recursive: true, force: true })
  },
})

// Self-contained: sql.js's browser build (no Node built-ins) and signals-core
// are bundled in; only the wasm stays a separate file.
const script = {
  input: 'src/iife.ts',
  plugins: [ts({ check: false }), nodeResolve({ browser: true, exportConditions: ['browser'], preferBuiltins: false }), commonjs(), copySqlWasm()],
  output: {
    file: 'dist/tidelog.iife.js',
    format: 'iife',
    name: 'Tidelog',
    exports: 'named',
    sourcemap: true,
    plugins: [terser({ format: { comments: false } })],
  },
}

export default [{ ...library, plugins: [cleanDist(), ...library.plugins] }, types, script]
