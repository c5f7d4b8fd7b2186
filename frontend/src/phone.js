// The one seam around the Twilio Voice SDK: only this module creates a Device or
// touches a Call. The rest of the page sees plain states, plain words and the
// small PhoneCall wrapper below. Device and Call are kept out of Vue's
// reactivity (markRaw): a Proxy around them breaks the SDK's internals.
import { markRaw } from 'vue'
import { siteUrl } from './site.js'

// How long registration may take before the page says Twilio cannot be reached,
// rather than showing "connecting" for ever.
export const REGISTRATION_TIMEOUT_MS = 12000
const RETRY_DELAYS_MS = [2000, 5000, 10000, 30000, 60000]
const UNREACHABLE = 'Twilio unreachable: no answer from Twilio’s servers. Check the network connection.'

export class PhoneError extends Error {
  constructor(kind, message) {
    super(message)
    this.kind = kind // 'microphone' | 'unreachable' | 'not-configured' | 'logged-out' | 'token' | 'other'
  }
}

// The SDK is big: it is fetched when the person presses Start, never in the first load.
// Tests inject a fake Device with the SDK's shape through window.__shetphoneDeviceFactory
// (Playwright's add_init_script); production has no such global and loads the real SDK.
async function deviceFactory() {
  if (typeof window.__shetphoneDeviceFactory === 'function') return window.__shetphoneDeviceFactory
  const { Device } = await import('@twilio/voice-sdk')
  return (token, options) => new Device(token, options)
}

async function fetchToken() {
  let response
  try {
    response = await fetch(siteUrl('token'), { credentials: 'same-origin', headers: { Accept: 'application/json' } })
  } catch {
    throw new PhoneError('unreachable', 'Shetphone’s server cannot be reached. Check the network connection.')
  }
  if (response.status === 401) throw new PhoneError('logged-out', 'You have been logged out.')
  const body = await response.json().catch(() => ({}))
  if (response.status === 503) {
    throw new PhoneError('not-configured', body.error || 'Twilio is not configured on the server.')
  }
  if (!response.ok || !body.token) throw new PhoneError('other', `The server could not issue a token (${response.status}).`)
  return body
}

// Plain words for the SDK's errors (TwilioError codes) and the browser's media errors.
export function describeError(error) {
  if (error instanceof PhoneError) return error
  const code = error && error.code
  const name = (error && (error.name || (error.originalError && error.originalError.name))) || ''
  if ([31401, 31402, 31208].includes(code) || /NotAllowed|Permission|NotFound|NotReadable/.test(name)) {
    return new PhoneError('microphone', 'No microphone: allow this page to use a microphone, or plug one in.')
  }
  if ([20101, 20102, 20103, 20104, 20105, 20106, 20107, 20151, 20157, 31202, 31204, 31205, 31206, 31207].includes(code)) {
    return new PhoneError('token', 'Twilio refused this phone’s access token. Check the Twilio settings on the server.')
  }
  if ([31000, 31003, 31005, 31009, 53000, 53001, 53405].includes(code) || /Signaling|Transport|Connection/.test(name)) {
    return new PhoneError('unreachable', 'Twilio unreachable: the phone cannot reach Twilio’s servers. Check the network connection.')
  }
  const detail = (error && (error.explanation || error.message)) || String(error)
  return new PhoneError('other', `The phone stopped working: ${detail}`)
}

async function checkMicrophone() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new PhoneError('microphone', 'No microphone: this browser cannot use one here (the page needs HTTPS).')
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true })
    stream.getTracks().forEach((track) => track.stop())
  } catch (error) {
    throw describeError(error)
  }
}

// A call as the page sees it: methods in plain words, SDK events forwarded to handlers.
export class PhoneCall {
  constructor(call, direction) {
    this.call = markRaw(call)
    this.direction = direction
    this.handlers = {}
    const forward = (event, handler) => call.on(event, (...args) => this.emit(handler, ...args))
    forward('accept', 'accepted')
    forward('ringing', 'ringing')
    forward('disconnect', 'ended')
    forward('cancel', 'cancelled')
    forward('reject', 'rejected')
    forward('error', 'failed')
    forward('reconnecting', 'reconnecting')
    forward('reconnected', 'reconnected')
    forward('volume', 'volume')
    forward('warning', 'warning')
    forward('warning-cleared', 'warningCleared')
  }

  emit(handler, ...args) {
    if (this.handlers[handler]) this.handlers[handler](...args)
  }

  on(handlers) {
    Object.assign(this.handlers, handlers)
    return this
  }

  get sid() {
    return (this.call.parameters && this.call.parameters.CallSid) || null
  }

  get from() {
    return (this.call.parameters && this.call.parameters.From) || ''
  }

  accept() { this.call.accept() }
  reject() { this.call.reject() }
  hangUp() { this.call.disconnect() }
  mute(muted) { this.call.mute(muted) }
  sendDigits(digits) { this.call.sendDigits(digits) }
}

export class Phone {
  // handlers: state(state, message), incoming(PhoneCall), audioDevicesChanged(), loggedOut(),
  // and registration(ready): the Device registered (true: calls can ring it) or stopped being so.
  constructor(handlers) {
    this.handlers = handlers
    this.device = null
    this.state = 'offline'
    this.registered = false
    this.retries = 0
    this.retryTimer = null
    this.registrationTimer = null
    this.tokenRetries = 0
    this.tokenRetryTimer = null
  }

  setState(state, message = '') {
    this.state = state
    this.handlers.state(state, message)
  }

  // Told once per change: the server rings this page only while it is registered (SPEC §7).
  setRegistered(registered) {
    if (registered === this.registered) return
    this.registered = registered
    if (this.handlers.registration) this.handlers.registration(registered)
  }

  fail(error) {
    const problem = describeError(error)
    if (problem.kind === 'logged-out') {
      this.handlers.loggedOut()
      return problem
    }
    this.setState('error', problem.message)
    return problem
  }

  // Called from a click: the browser lets a Device created after a gesture ring.
  async start() {
    if (this.device) return true
    this.setState('connecting')
    try {
      await checkMicrophone()
      const [createDevice, grant] = await Promise.all([deviceFactory(), fetchToken()])
      this.device = markRaw(createDevice(grant.token, {
        codecPreferences: ['opus', 'pcmu'],
        closeProtection: false, // the page asks itself, with its own words, only during a call
        allowIncomingWhileBusy: true,
        tokenRefreshMs: 60000,
        logLevel: 'warn',
      }))
    } catch (error) {
      this.fail(error)
      return false
    }
    this.listen()
    this.register()
    return true
  }

  listen() {
    const device = this.device
    device.on('registering', () => { if (this.state !== 'error') this.setState('connecting') })
    device.on('registered', () => {
      clearTimeout(this.registrationTimer)
      this.retries = 0
      this.setState('ready')
      this.setRegistered(true)
    })
    device.on('unregistered', () => {
      // Unasked-for: the SDK lost its registration; say so and register again.
      if (this.device !== device) return
      this.setRegistered(false)
      if (this.state === 'ready') this.setState('connecting')
      this.scheduleRetry()
    })
    device.on('error', (error, call) => {
      if (call) return // a call's own error reaches its PhoneCall; the phone itself is fine
      const problem = this.fail(error)
      if (problem.kind === 'token') this.refreshToken()
      else if (device.state !== 'registered') this.scheduleRetry()
    })
    device.on('incoming', (call) => this.handlers.incoming(new PhoneCall(call, 'inbound')))
    device.on('tokenWillExpire', () => this.refreshToken())
    if (device.audio && device.audio.on) device.audio.on('deviceChange', () => this.handlers.audioDevicesChanged())
  }

  async register() {
    clearTimeout(this.registrationTimer)
    this.registrationTimer = setTimeout(() => {
      if (this.state !== 'ready') {
        this.setState('error', UNREACHABLE)
        this.scheduleRetry()
      }
    }, REGISTRATION_TIMEOUT_MS)
    // Registering already: the SDK keeps reconnecting by itself; asking again would only be refused.
    if (this.device.state !== 'unregistered') return
    try {
      await this.device.register()
    } catch (error) {
      if (error && error.name === 'InvalidStateError') return // the SDK got there first
      clearTimeout(this.registrationTimer)
      this.fail(error)
      this.scheduleRetry()
    }
  }

  scheduleRetry() {
    if (this.retryTimer || !this.device) return
    const delay = RETRY_DELAYS_MS[Math.min(this.retries, RETRY_DELAYS_MS.length - 1)]
    this.retries += 1
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null
      if (this.device) this.register()
    }, delay)
  }

  // The person's "Try again": a Device that is merely unregistered registers again;
  // one stuck connecting is replaced by a new one, with a fresh token.
  async retryNow() {
    clearTimeout(this.retryTimer)
    this.retryTimer = null
    this.retries = 0
    if (this.device && this.device.state === 'unregistered') {
      this.setState('connecting')
      return this.register()
    }
    this.discardDevice()
    return this.start()
  }

  discardDevice() {
    const device = this.device
    this.device = null
    clearTimeout(this.registrationTimer)
    clearTimeout(this.tokenRetryTimer)
    this.tokenRetryTimer = null
    this.tokenRetries = 0
    this.setRegistered(false) // a new Device is not registered until it says so
    if (!device) return
    device.removeAllListeners()
    if (device.audio && device.audio.removeAllListeners) device.audio.removeAllListeners('deviceChange')
    try {
      device.destroy()
    } catch {
      // already destroyed: nothing to release
    }
  }

  // A new token before the old one runs out. Asked again and again while it fails (the server
  // restarting, the network down): asked once, a phone open all day would lose its token for good.
  async refreshToken() {
    clearTimeout(this.tokenRetryTimer)
    this.tokenRetryTimer = null
    try {
      const grant = await fetchToken()
      if (!this.device) return
      this.device.updateToken(grant.token)
      const retried = this.tokenRetries > 0
      this.tokenRetries = 0
      // The failed refresh was the only trouble: the Device stayed registered all along.
      if (retried && this.state === 'error' && this.device.state === 'registered') this.setState('ready')
    } catch (error) {
      if (this.fail(error).kind !== 'logged-out') this.scheduleTokenRetry()
    }
  }

  scheduleTokenRetry() {
    if (this.tokenRetryTimer || !this.device) return
    const delay = RETRY_DELAYS_MS[Math.min(this.tokenRetries, RETRY_DELAYS_MS.length - 1)]
    this.tokenRetries += 1
    this.tokenRetryTimer = setTimeout(() => this.refreshToken(), delay)
  }

  // Our server is back (its socket reconnected): a token refresh waiting to be retried goes now.
  serverBack() {
    if (this.tokenRetryTimer && this.device) this.refreshToken()
  }

  async connect(to, callerId) {
    const params = { To: to }
    if (callerId) params.CallerId = callerId
    const call = await this.device.connect({ params })
    return new PhoneCall(call, 'outbound')
  }

  get audio() {
    return this.device && this.device.audio ? this.device.audio : null
  }

  // Audio devices, as plain lists for the selectors.
  audioDevices() {
    const audio = this.audio
    if (!audio) return null
    const list = (map) => Array.from((map && map.values()) || []).map((info) => ({
      id: info.deviceId, label: info.label || 'Unnamed device',
    }))
    const firstId = (collection) => {
      const chosen = collection && collection.get ? Array.from(collection.get())[0] : null
      return chosen ? chosen.deviceId : 'default'
    }
    return {
      inputs: list(audio.availableInputDevices),
      outputs: list(audio.availableOutputDevices),
      outputSelection: Boolean(audio.isOutputSelectionSupported),
      input: (audio.inputDevice && audio.inputDevice.deviceId) || 'default',
      speaker: firstId(audio.speakerDevices),
      ringtone: firstId(audio.ringtoneDevices),
    }
  }

  async chooseInput(id) { await this.audio.setInputDevice(id) }
  async chooseSpeaker(id) { await this.audio.speakerDevices.set([id]) }
  async chooseRingtone(id) { await this.audio.ringtoneDevices.set([id]) }
}
