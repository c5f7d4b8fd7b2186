// JSON POSTs to our own server carry the page's CSRF token in X-CSRFToken (SPEC §3): the
// config's csrf_token when the server puts one there, else the logout form's.
import { siteUrl } from './site.js'

export function csrfToken(config = {}) {
  if (config.csrf_token) return config.csrf_token
  const field = document.querySelector('input[name="csrf_token"]')
  return field ? field.value : ''
}

// The response, or throws when the server could not be reached.
export function postJson(path, body, config) {
  return fetch(siteUrl(path), {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'X-CSRFToken': csrfToken(config) },
    body: JSON.stringify(body),
  })
}
