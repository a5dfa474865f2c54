// Puts the script bundle and sql.js's wasm next to public/index.html: the page
// loads them with a plain <script src="tidelog.iife.js">, no build step.
import { copyFileSync, existsSync } from 'node:fs'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
for (const file of ['tidelog.iife.js', 'sql-wasm.wasm']) {
  let from
  try {
    from = require.resolve(`tidelog/${file}`)
  } catch {
    console.error(`tidelog/${file} is missing: run npm install first.`)
    process.exit(1)
  }
  if (!existsSync(from)) {
    console.error(`${from} is missing: in a checkout of tidelog, run npm run build at the repository's root.`)
    process.exit(1)
  }
  copyFileSync(from, new URL(`./public/${file}`, import.meta.url))
}
