// Builds the dialer into ../static/dist with a manifest, so Flask can serve
// hashed file names (cached for a year) and find them by their source name.
import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

export default defineConfig({
  plugins: [vue()],
  // Relative: chunks load from beside the entry, wherever Flask serves it (a path prefix too).
  base: './',
  publicDir: false,
  build: {
    outDir: fileURLToPath(new URL('../static/dist', import.meta.url)),
    emptyOutDir: true,
    manifest: true,
    // The CSP allows no inline script, so nothing may be inlined as a data: module.
    assetsInlineLimit: 0,
    // The Voice SDK chunk is large on its own; it is loaded on Start, not counted in the first load.
    chunkSizeWarningLimit: 1200,
    rollupOptions: {
      input: {
        dialer: fileURLToPath(new URL('./src/main.js', import.meta.url)),
        login: fileURLToPath(new URL('./src/login.js', import.meta.url)),
      },
    },
  },
})
