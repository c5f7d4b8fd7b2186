// The service worker of the installed window (and of the tab): the page's own built
// files come from a cache, so a second open does not wait for them. Nothing else is
// touched: the page itself (fresh CSRF token and settings each time), /token, /calls,
// /presets, voicemail audio, Socket.IO and Twilio's routes all go to the network as if
// there were no worker, because the fetch handler answers only under static/dist/.
//
// Not bundled by Vite: the build copies this file to dist/sw.js behind a first line
// `self.SHETPHONE_BUILD = {version, precache}` (vite.config.js), and Flask serves it
// at the root of the app (/sw.js, or /prefix/sw.js), so its scope covers every page.
const { version, precache } = self.SHETPHONE_BUILD
const CACHE_PREFIX = 'shetphone-'
const CACHE = CACHE_PREFIX + version
const DIST = new URL('static/dist/', self.location)
const HASHED = new URL('assets/', DIST).pathname // content-hashed names: a name never changes content

function ours(url) {
  return url.origin === DIST.origin && url.pathname.startsWith(DIST.pathname)
}

self.addEventListener('install', (event) => {
  // Where the browser has static routes, the page itself goes straight to the network
  // without waking this worker: opening a window waits for no worker start-up.
  const routed = event.addRoutes
    ? event.addRoutes([{ condition: { requestMode: 'navigate' }, source: 'network' }]).catch(() => {})
    : null
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE)
    await cache.addAll(precache.map((file) => new URL(file, DIST).href))
    await routed
    await self.skipWaiting()
  })())
})

// A new build's worker takes over at once and drops the caches of older builds.
self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    const names = await caches.keys()
    await Promise.all(names.filter((name) => name.startsWith(CACHE_PREFIX) && name !== CACHE)
      .map((name) => caches.delete(name)))
    await self.clients.claim()
  })())
})

self.addEventListener('fetch', (event) => {
  const request = event.request
  if (request.method !== 'GET' || !ours(new URL(request.url))) return // the network, untouched
  event.respondWith(fromCache(request))
})

async function fromCache(request) {
  const cache = await caches.open(CACHE)
  const kept = await cache.match(request)
  if (kept) return kept
  const response = await fetch(request)
  // The Voice SDK's chunk, fetched on the first Start, is kept for the next open.
  if (response.ok && new URL(request.url).pathname.startsWith(HASHED)) await cache.put(request, response.clone())
  return response
}
