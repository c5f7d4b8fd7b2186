// A stand-in for the Twilio Voice SDK's Device, injected by the browser tests with
// Playwright's add_init_script before the page loads. The page's phone.js uses
// window.__shetphoneDeviceFactory when it exists; production never defines it and
// loads the real SDK. Everything the page asks of the Device and its Calls is
// recorded in window.__fakeDevice.log, and the tests drive the SDK's events
// through the helpers on window.__fakeDevice.
(() => {
  class Emitter {
    constructor() { this.listeners = {} }
    on(event, listener) { (this.listeners[event] = this.listeners[event] || []).push(listener); return this }
    addListener(event, listener) { return this.on(event, listener) }
    once(event, listener) {
      const wrapped = (...args) => { this.off(event, wrapped); listener(...args) }
      return this.on(event, wrapped)
    }
    off(event, listener) {
      this.listeners[event] = (this.listeners[event] || []).filter((known) => known !== listener)
      return this
    }
    removeListener(event, listener) { return this.off(event, listener) }
    removeAllListeners(event) { if (event) delete this.listeners[event]; else this.listeners = {}; return this }
    emit(event, ...args) { for (const listener of [...(this.listeners[event] || [])]) listener(...args); return true }
  }

  const registry = {
    log: [], // [what, details] for every request the page made
    devices: [],
    calls: [],
    registration: 'succeed', // or 'hang': register() never answers
    get device() { return this.devices[this.devices.length - 1] || null },
    get lastCall() { return this.calls[this.calls.length - 1] || null },
    record(what, details) { this.log.push([what, details === undefined ? null : details]) },
    entries(what) { return this.log.filter(([name]) => name === what).map(([, details]) => details) },
    incoming(parameters) {
      const call = new FakeCall('INCOMING', { CallSid: 'CA' + String(Math.random()).slice(2, 18), ...parameters })
      this.device.emit('incoming', call)
      return this.calls.indexOf(call)
    },
  }

  class FakeCall extends Emitter {
    constructor(direction, parameters) {
      super()
      this.direction = direction
      this.parameters = { ...parameters }
      this.customParameters = new Map()
      this.muted = false
      this.state = 'pending'
      this.index = registry.calls.length
      registry.calls.push(this)
    }
    record(what, details) { registry.record(what, { call: this.index, ...(details || {}) }) }
    accept(options) {
      this.record('call.accept')
      this.state = 'open'
      this.emit('accept', this)
    }
    reject() { this.record('call.reject'); this.state = 'closed'; this.emit('reject') }
    ignore() { this.record('call.ignore'); this.state = 'closed' }
    disconnect() {
      this.record('call.disconnect')
      if (this.state === 'closed') return
      this.state = 'closed'
      this.emit('disconnect', this)
    }
    mute(shouldMute = true) { this.muted = shouldMute; this.record('call.mute', { muted: shouldMute }); this.emit('mute', shouldMute, this) }
    isMuted() { return this.muted }
    sendDigits(digits) { this.record('call.sendDigits', { digits }) }
    status() { return this.state }
    // The far end answered (an outgoing call): Twilio tells the SDK the CallSid then.
    answered(callSid) {
      this.parameters.CallSid = callSid
      this.state = 'open'
      this.emit('accept', this)
    }
    hungUpRemotely() { this.state = 'closed'; this.emit('disconnect', this) }
  }

  const device = (id, label) => ({ deviceId: id, label, kind: 'audiooutput' })
  class FakeAudio extends Emitter {
    constructor() {
      super()
      this.isOutputSelectionSupported = true
      this.availableInputDevices = new Map([['default', device('default', 'Fake microphone')], ['mic-2', device('mic-2', 'Headset microphone')]])
      this.availableOutputDevices = new Map([['default', device('default', 'Fake speaker')], ['speaker-2', device('speaker-2', 'Headphones')]])
      this.inputDevice = device('default', 'Fake microphone')
      const outputs = (what) => {
        let chosen = new Set([this.availableOutputDevices.get('default')])
        return {
          get: () => chosen,
          set: async (ids) => {
            registry.record(`audio.${what}`, { ids: [].concat(ids) })
            chosen = new Set([].concat(ids).map((id) => this.availableOutputDevices.get(id)))
          },
        }
      }
      this.speakerDevices = outputs('speaker')
      this.ringtoneDevices = outputs('ringtone')
    }
    async setInputDevice(id) { registry.record('audio.input', { id }); this.inputDevice = this.availableInputDevices.get(id) }
  }

  class FakeDevice extends Emitter {
    constructor(token, options) {
      super()
      this.token = token
      this.state = 'unregistered'
      this.audio = new FakeAudio()
      registry.devices.push(this)
      registry.record('device.create', { token, options })
    }
    async register() {
      registry.record('device.register')
      this.state = 'registering'
      this.emit('registering')
      if (registry.registration === 'hang') return new Promise(() => {})
      await Promise.resolve()
      this.state = 'registered'
      this.emit('registered')
    }
    async unregister() { registry.record('device.unregister'); this.state = 'unregistered'; this.emit('unregistered') }
    async connect(options) {
      registry.record('device.connect', { params: { ...((options && options.params) || {}) } })
      return new FakeCall('OUTGOING', { To: options && options.params && options.params.To })
    }
    updateToken(token) { registry.record('device.updateToken', { token }); this.token = token }
    destroy() { registry.record('device.destroy'); this.state = 'destroyed'; this.emit('destroyed') }
  }

  window.__fakeDevice = registry
  window.__shetphoneDeviceFactory = (token, options) => new FakeDevice(token, options)
})()
