// The calls of the page: the active call, the one ringing, and their words on the
// status line. Plain reactive data for the components; the PhoneCall objects
// themselves stay outside Vue's reactivity.
import { computed, ref } from 'vue'
import { displayNumber } from './number.js'
import { describeError } from './phone.js'

const STATUS_WORDS = {
  queued: (who) => `Calling ${who}…`,
  initiated: (who) => `Calling ${who}…`,
  ringing: (who) => `Ringing ${who}…`,
  'in-progress': (who) => `Connected to ${who}`,
  answered: (who) => `Connected to ${who}`,
  completed: () => 'Call ended',
  busy: (who) => `${who} is busy`,
  'no-answer': (who) => `No answer from ${who}`,
  failed: (who) => `The call to ${who} failed`,
  canceled: () => 'Call cancelled',
}
const REMEMBERED_STATUSES = 20

export function formatDuration(ms) {
  const seconds = Math.max(0, Math.floor(ms / 1000))
  const minutes = Math.floor(seconds / 60)
  const hours = Math.floor(minutes / 60)
  const mmss = `${minutes % 60}:${String(seconds % 60).padStart(2, '0')}`
  return hours ? `${hours}:${mmss.padStart(5, '0')}` : mmss
}

// Why a call could not start or failed: the words the phone uses for a refused microphone or an
// unreachable Twilio (the SDK's own text is for developers), else the SDK's explanation.
function callProblem(what, error) {
  const problem = describeError(error)
  if (problem.kind !== 'other') return `${what}. ${problem.message}`
  return `${what}: ${(error && (error.explanation || error.message)) || error || 'unknown error'}`
}

function protectCall(event) {
  // Closing the tab would hang up: the browser asks the person first.
  event.preventDefault()
  event.returnValue = ''
}

// labelFor(number): a preset's alias or the formatted number; showBanner(kind, text, ms).
export function useCalls({ labelFor, showBanner }) {
  const call = ref(null) // what the page shows of the active call
  const incoming = ref(null) // what the page shows of the call ringing
  const outcome = ref('') // what happened to the last call, until the next one
  const now = ref(Date.now())
  let activeCall = null
  let ringingCall = null
  let ringingNotification = null
  let clock = null
  const recentStatuses = [] // call_status events that may arrive before the CallSid is known

  const elapsed = computed(() => (call.value && call.value.acceptedAt ? formatDuration(now.value - call.value.acceptedAt) : ''))
  const busy = () => Boolean(call.value)

  function show(direction, who, number, status) {
    call.value = {
      direction, who, number, status,
      acceptedAt: null, muted: false, reconnecting: false, digits: '', inputLevel: 0, outputLevel: 0, warnings: {},
      legSid: null, // this browser's leg: Twilio's CallSid of the SDK's call
      rootSid: null, // the call's own CallSid, which call control names it by (control.js)
    }
  }

  // An outgoing call: shown at once, followed once the Device hands back its Call.
  async function place(e164, connect) {
    const who = labelFor(e164)
    outcome.value = ''
    show('outbound', who, displayNumber(e164), `Calling ${who}…`)
    try {
      follow(await connect())
    } catch (error) {
      finish(callProblem('The call could not start', error))
    }
  }

  function follow(phoneCall) {
    activeCall = phoneCall
    // Events of a call that is no longer the active one (hung up to take another) change nothing.
    const current = (handler) => (...args) => {
      if (activeCall === phoneCall && call.value) handler(...args)
    }
    phoneCall.on({
      accepted: current(() => {
        call.value.acceptedAt = Date.now()
        call.value.legSid = phoneCall.sid
        // An outgoing call's root is the browser's own leg; an incoming one's is its parent (applyStatus).
        if (call.value.direction === 'outbound') call.value.rootSid = phoneCall.sid
        // Calls are bridged on answer, so the SDK's accept means the other side picked up;
        // Twilio's status callbacks, when they come, refine it.
        call.value.status = `Connected to ${call.value.who}`
        replayStatuses()
      }),
      ringing: current(() => { call.value.status = `Ringing ${call.value.who}…` }),
      ended: current(() => finish('Call ended')),
      cancelled: current(() => finish('The caller hung up')),
      rejected: current(() => finish('Call rejected')),
      failed: current((error) => finish(callProblem('The call failed', error))),
      reconnecting: current(() => {
        call.value.reconnecting = true
        showBanner('warn', 'The call lost its connection. Reconnecting…', 0)
      }),
      reconnected: current(() => {
        call.value.reconnecting = false
        showBanner('ok', 'The call is reconnected.')
      }),
      volume: current((inputLevel, outputLevel) => {
        call.value.inputLevel = inputLevel
        call.value.outputLevel = outputLevel
      }),
      warning: current((name) => { call.value.warnings = { ...call.value.warnings, [name]: true } }),
      warningCleared: current((name) => {
        const { [name]: _cleared, ...rest } = call.value.warnings
        call.value.warnings = rest
      }),
    })
    clearInterval(clock)
    clock = setInterval(() => { now.value = Date.now() }, 1000)
    window.addEventListener('beforeunload', protectCall)
  }

  function finish(words) {
    if (call.value && call.value.acceptedAt) words += ` after ${formatDuration(Date.now() - call.value.acceptedAt)}`
    outcome.value = words
    call.value = null
    activeCall = null
    clearInterval(clock)
    window.removeEventListener('beforeunload', protectCall)
  }

  function hangUp() {
    if (activeCall) activeCall.hangUp()
    else finish('Call ended')
  }

  function toggleMute() {
    if (!call.value || !activeCall) return
    call.value.muted = !call.value.muted
    activeCall.mute(call.value.muted)
  }

  function sendDigit(digit) {
    if (!activeCall || !call.value) return
    activeCall.sendDigits(digit)
    call.value.digits += digit
  }

  // ---------------------------------------------------------- Twilio's status, via Socket.IO
  function matchesActiveCall(payload) {
    const sid = activeCall && activeCall.sid
    return Boolean(sid) && (payload.call_sid === sid || payload.parent_call_sid === sid)
  }

  function applyStatus(payload) {
    if (payload.call_sid === call.value.legSid && payload.parent_call_sid) call.value.rootSid = payload.parent_call_sid
    const words = STATUS_WORDS[payload.status]
    if (words) call.value.status = words(call.value.who)
  }

  function replayStatuses() {
    for (const payload of recentStatuses) if (call.value && matchesActiveCall(payload)) applyStatus(payload)
  }

  function onCallStatus(payload) {
    recentStatuses.push(payload)
    if (recentStatuses.length > REMEMBERED_STATUSES) recentStatuses.shift()
    if (call.value && matchesActiveCall(payload)) applyStatus(payload)
  }

  // ---------------------------------------------------------- incoming
  function ringing(phoneCall) {
    if (ringingCall) ringingCall.reject() // one ringing panel at a time; the newest wins
    ringingCall = phoneCall
    const number = phoneCall.from
    incoming.value = { who: labelFor(number), number: displayNumber(number) }
    const stillRinging = (handler) => () => { if (ringingCall === phoneCall) handler() }
    phoneCall.on({
      cancelled: stillRinging(() => stopRinging(`Missed call from ${labelFor(number)}`)),
      rejected: stillRinging(() => stopRinging('')),
      ended: stillRinging(() => stopRinging('')),
    })
    notify(incoming.value)
  }

  function notify(details) {
    if (!('Notification' in window) || Notification.permission !== 'granted') return
    if (document.visibilityState === 'visible' && document.hasFocus()) return // the panel is enough
    ringingNotification = new Notification('Incoming call', {
      body: details.who === details.number ? details.number : `${details.who} (${details.number})`,
      tag: 'shetphone-incoming',
      requireInteraction: true,
    })
    ringingNotification.onclick = () => {
      window.focus()
      acceptIncoming()
    }
  }

  function stopRinging(words) {
    if (ringingNotification) ringingNotification.close()
    ringingNotification = null
    ringingCall = null
    incoming.value = null
    if (words) outcome.value = words
  }

  function acceptIncoming() {
    if (!ringingCall) return
    const phoneCall = ringingCall
    const details = incoming.value
    if (activeCall) activeCall.hangUp()
    stopRinging('')
    show('inbound', details.who, details.number, `Answering ${details.who}…`)
    follow(phoneCall)
    phoneCall.accept()
  }

  function rejectIncoming() {
    if (!ringingCall) return
    const details = incoming.value
    ringingCall.reject()
    stopRinging(`Rejected the call from ${details.who}`)
  }

  return {
    call, incoming, outcome, elapsed, busy,
    place, hangUp, toggleMute, sendDigit, onCallStatus, ringing, acceptIncoming, rejectIncoming,
  }
}
