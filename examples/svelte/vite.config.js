import { svelte } from '@sveltejs/vite-plugin-svelte'
import { defineConfig } from 'vite'

export default defineConfig({
  plugins: [svelte()],
  // file:../.. links the repository, whose node_modules has its own copy: one copy for the app and tidelog
  resolve: { dedupe: ['@preact/signals-core'] },
  // npm run dev: Vite serves the app and forwards /sync to `tidelog serve` (npm run serve, port 8787; TIDELOG_URL for another)
  server: {
    proxy: { '/sync': { target: process.env.TIDELOG_URL ?? 'http://127.0.0.1:8787', ws: true } },
    // the linked repository's dist/ (sql-wasm.wasm) is outside this folder; an app installed from npm needs no such line
    fs: { allow: ['../..'] },
  },
})
