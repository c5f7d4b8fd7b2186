// The colour theme: light, dark, or the system's (prefers-color-scheme). The choice is a
// cookie, so the server writes it into <html data-theme> and the page never paints in
// the wrong theme first (an inline script could do that from localStorage, but the CSP
// forbids inline script). The rule for the theme-color metas is also in
// shetphone/web/appshell.py (theme_color_media).
import { sitePath } from './site.js'

export const THEME_COOKIE = 'shetphone_theme'
export const THEME_CHOICES = ['light', 'dark', 'system']
const KEPT_SECONDS = 400 * 24 * 3600 // the longest a browser keeps a cookie

export function currentTheme() {
  const chosen = document.documentElement.dataset.theme
  return chosen === 'light' || chosen === 'dark' ? chosen : 'system'
}

function themeColorMedia(scheme, choice) {
  if (choice === 'system') return `(prefers-color-scheme: ${scheme})`
  return scheme === choice ? 'all' : 'not all'
}

export function chooseTheme(choice) {
  const root = document.documentElement
  const path = sitePath('.')
  const secure = window.location.protocol === 'https:' ? '; Secure' : ''
  if (choice === 'light' || choice === 'dark') {
    root.dataset.theme = choice
    document.cookie = `${THEME_COOKIE}=${choice}; Path=${path}; Max-Age=${KEPT_SECONDS}; SameSite=Lax${secure}`
  } else {
    delete root.dataset.theme
    document.cookie = `${THEME_COOKIE}=; Path=${path}; Max-Age=0; SameSite=Lax${secure}`
  }
  const colorScheme = document.querySelector('meta[name="color-scheme"]')
  if (colorScheme) colorScheme.content = choice === 'system' ? 'light dark' : choice
  for (const meta of document.querySelectorAll('meta[name="theme-color"][data-scheme]')) {
    meta.media = themeColorMedia(meta.dataset.scheme, choice)
  }
}
