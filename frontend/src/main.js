// The dialer page. The server embeds what the page needs as JSON (not script),
// so the Content-Security-Policy can forbid inline script.
import { createApp } from 'vue'
import './styles/base.css'
import './styles/dialer.css'
import App from './App.vue'
import { FontAwesomeIcon } from './icons.js'

const configElement = document.getElementById('shetphone-config')
const config = JSON.parse(configElement ? configElement.textContent : '{}')

createApp(App, { config }).component('FaIcon', FontAwesomeIcon).mount('#app')
