// Builds the dialer into ../static/dist with a manifest, so Flask can serve
// hashed file names (cached for a year) and find them by their source name.
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'
import { initWasm, Resvg } from '@resvg/resvg-wasm'

const source = (path) => fileURLToPath(new URL(path, import.meta.url))

// The icon's PNGs, as a web app manifest and home screens want them; fixed names
// (Flask's manifest route and the templates name them), under dist/icons/.
const ICON_RENDERS = [
  { file: 'icons/icon-192.png', size: 192, fullBleed: false },
  { file: 'icons/icon-512.png', size: 512, fullBleed: false },
  // Maskable (Android crops it to its own shape) and Apple's home screen: the ground to the edges.
  { file: 'icons/icon-maskable-512.png', size: 512, fullBleed: true },
  { file: 'icons/apple-touch-icon.png', size: 180, fullBleed: true },
]

let resvgReady = null // the wasm renderer loads once, even across --watch rebuilds

async function renderIcons(svg) {
  resvgReady ||= readFile(source('./node_modules/@resvg/resvg-wasm/index_bg.wasm')).then((wasm) => initWasm(wasm))
  await resvgReady
  return ICON_RENDERS.map(({ file, size, fullBleed }) => {
    const text = fullBleed ? svg.replace(/(<rect id="ground"[^>]*?) rx="\d+"/, '$1') : svg
    return { file, png: new Resvg(text, { fitTo: { mode: 'width', value: size } }).render().asPng() }
  })
}

// What the first load of the entries needs: their own files, their static imports and CSS.
// Dynamic imports (the Voice SDK, fetched on Start) are left to the worker's runtime cache.
function initialFiles(bundle) {
  const byName = new Map(Object.values(bundle).map((item) => [item.fileName, item]))
  const files = new Set()
  const visit = (chunk) => {
    if (files.has(chunk.fileName)) return
    files.add(chunk.fileName)
    for (const css of (chunk.viteMetadata && chunk.viteMetadata.importedCss) || []) files.add(css)
    for (const imported of chunk.imports || []) if (byName.has(imported)) visit(byName.get(imported))
  }
  for (const item of Object.values(bundle)) if (item.type === 'chunk' && item.isEntry) visit(item)
  return [...files].sort()
}

// The installable app: icons rendered from src/icon.svg, and the service worker
// (src/sw.js) with the list of files it keeps, named by a version that changes with them.
function appShell() {
  return {
    name: 'shetphone-app-shell',
    apply: 'build',
    enforce: 'post', // after Vite has dropped the chunks that were only CSS
    async generateBundle(_options, bundle) {
      const svg = await readFile(source('./src/icon.svg'), 'utf8')
      const version = createHash('sha256')
      this.emitFile({ type: 'asset', fileName: 'icons/icon.svg', source: svg })
      version.update(svg)
      for (const { file, png } of await renderIcons(svg)) {
        this.emitFile({ type: 'asset', fileName: file, source: png })
      }
      const precache = [...initialFiles(bundle), 'icons/icon.svg']
      version.update(precache.join('\n'))
      const build = { version: version.digest('hex').slice(0, 16), precache }
      const worker = await readFile(source('./src/sw.js'), 'utf8')
      this.emitFile({ type: 'asset', fileName: 'sw.js', source: `self.SHETPHONE_BUILD = ${JSON.stringify(build)};\n${worker}` })
    },
  }
}

export default defineConfig({
  plugins: [vue(), appShell()],
  // Relative: chunks load from beside the entry, wherever Flask serves it (a path prefix too).
  base: './',
  publicDir: false,
  build: {
    outDir: source('../static/dist'),
    emptyOutDir: true,
    manifest: true,
    // The CSP allows no inline script, so nothing may be inlined as a data: module.
    assetsInlineLimit: 0,
    // The Voice SDK chunk is large on its own; it is loaded on Start, not counted in the first load.
    chunkSizeWarningLimit: 1200,
    rollupOptions: {
      input: {
        dialer: source('./src/main.js'),
        login: source('./src/login.js'),
      },
    },
  },
})
