// The dialer page. The server embeds what the page needs as JSON (not script),
// so the Content-Security-Policy can forbid inline script.
import { createApp } from 'vue'
import './styles/base.css'
import './styles/dialer.css'
import App from './App.vue'
import { FontAwesomeIcon } from './icons.js'
import { sitePath, siteUrl } from './site.js'

const configElement = document.getElementById('shetphone-config')
const config = JSON.parse(configElement ? configElement.textContent : '{}')

createApp(App, { config }).component('FaIcon', FontAwesomeIcon).mount('#app')

// The service worker keeps the built files for the next open (src/sw.js). Flask serves it
// at the app's root, so its scope is every page, under a path prefix too. After the load:
// its downloads never compete with the page's own.
if ('serviceWorker' in navigator) {
  window.addEventListener('load', () => {
    navigator.serviceWorker.register(siteUrl('sw.js'), { scope: sitePath('.') })
      .catch((error) => console.warn('service worker not registered:', error))
  })
}
