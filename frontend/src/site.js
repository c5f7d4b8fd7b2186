// URLs of our own server, relative to the dialer page, so the site also works
// under a path prefix behind a proxy (the page is at the site's root, "/" or "/prefix/").
export function siteUrl(path) {
  return new URL(path, new URL('.', document.baseURI)).href
}

export function sitePath(path) {
  return new URL(siteUrl(path)).pathname
}
