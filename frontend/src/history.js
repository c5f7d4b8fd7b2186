// The recent calls (GET /calls) and which missed calls the person has seen.
// The server's list is the truth: events only say "something changed", and the
// page refetches, coalescing a burst of Twilio callbacks into one request.
import { computed, ref } from 'vue'
import { siteUrl } from './site.js'

export const CALLS_LISTED = 50
export const REFRESH_DEBOUNCE_MS = 300
const REFRESH_AT_LEAST_EVERY_MS = 2000 // a steady stream of events still refreshes now and then
const SEEN_REMEMBERED = 500

function seenKey(identity) {
  return `shetphone:seen-missed:${identity}`
}

function readSeen(identity) {
  try {
    const stored = JSON.parse(window.localStorage.getItem(seenKey(identity)) || '[]')
    return new Set(Array.isArray(stored) ? stored : [])
  } catch {
    return new Set() // private mode or a damaged entry: the badge may come back, nothing breaks
  }
}

// loggedOut(): the session ended (401).
export function useCallHistory({ identity, loggedOut }) {
  const calls = ref([])
  const state = ref('loading') // loading, ready, error (the last list stays shown on a failed refresh)
  const problem = ref('')
  const seen = ref(readSeen(identity))
  let debounceTimer = null
  let firstRequestAt = 0
  let latestRequest = 0

  const unseenMissed = computed(() => calls.value.filter((call) => call.missed && !seen.value.has(call.call_sid)))

  async function load() {
    const request = ++latestRequest
    try {
      const response = await fetch(siteUrl(`calls?limit=${CALLS_LISTED}`), {
        credentials: 'same-origin', headers: { Accept: 'application/json' },
      })
      if (response.status === 401) return loggedOut()
      if (!response.ok) throw new Error(`the server answered ${response.status}`)
      const body = await response.json()
      if (request !== latestRequest) return // a newer request was sent meanwhile: its answer wins
      calls.value = body.calls
      state.value = 'ready'
      problem.value = ''
    } catch (error) {
      if (request !== latestRequest) return
      state.value = 'error'
      problem.value = calls.value.length
        ? 'Could not refresh the list; it may be out of date.'
        : 'Could not load your recent calls.'
      console.warn('recent calls:', error)
    }
  }

  // call_status and voicemail events come in bursts: one request after the burst settles.
  function refreshSoon() {
    const now = Date.now()
    if (!debounceTimer) firstRequestAt = now
    clearTimeout(debounceTimer)
    const wait = Math.min(REFRESH_DEBOUNCE_MS, Math.max(0, firstRequestAt + REFRESH_AT_LEAST_EVERY_MS - now))
    debounceTimer = setTimeout(() => {
      debounceTimer = null
      load()
    }, wait)
  }

  function markSeen() {
    if (!unseenMissed.value.length) return
    // Only calls still listed are kept, so the stored set stays small.
    const listed = new Set(calls.value.map((call) => call.call_sid))
    const kept = [...seen.value].filter((sid) => listed.has(sid))
    const next = new Set([...kept, ...unseenMissed.value.map((call) => call.call_sid)].slice(-SEEN_REMEMBERED))
    seen.value = next
    try {
      window.localStorage.setItem(seenKey(identity), JSON.stringify([...next]))
    } catch {
      // storage full or forbidden: seen for this page only
    }
  }

  // Another tab of the same person marked them seen.
  function onStorage(event) {
    if (event.key === seenKey(identity)) seen.value = readSeen(identity)
  }

  function stop() {
    clearTimeout(debounceTimer)
    window.removeEventListener('storage', onStorage)
  }
  window.addEventListener('storage', onStorage)

  return { calls, state, problem, unseenMissed, load, refreshSoon, markSeen, stop }
}

// ------------------------------------------------------------------ words for a call

const relative = new Intl.RelativeTimeFormat('en', { numeric: 'auto' })
const timeOfDay = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' })
const dayThisYear = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short' })
const dayOtherYear = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short', year: 'numeric' })
const fullTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' })

function sameDay(a, b) {
  return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate()
}

// { short, full }: "5 minutes ago" today, "Yesterday 18:02", "16 Nov", "16 Nov 2025" before
// (in the browser's own date style); full is for the tooltip.
export function whenWords(iso, now) {
  const at = new Date(iso)
  if (Number.isNaN(at.getTime())) return { short: '', full: '' }
  const full = fullTime.format(at)
  const seconds = Math.round((now - at) / 1000)
  if (sameDay(at, now)) {
    if (seconds < 45) return { short: 'Just now', full }
    if (seconds < 3600) return { short: relative.format(-Math.max(1, Math.round(seconds / 60)), 'minute'), full }
    return { short: relative.format(-Math.floor(seconds / 3600), 'hour'), full }
  }
  const yesterday = new Date(now)
  yesterday.setDate(now.getDate() - 1)
  if (sameDay(at, yesterday)) return { short: `Yesterday ${timeOfDay.format(at)}`, full }
  if (at.getFullYear() === now.getFullYear()) return { short: dayThisYear.format(at), full }
  return { short: dayOtherYear.format(at), full }
}

// What became of a call, in a few words, when it did not simply connect.
const OUTCOME_WORDS = {
  queued: 'Calling…',
  initiated: 'Calling…',
  ringing: 'Ringing…',
  'in-progress': 'In progress',
  answered: 'In progress',
  busy: 'Busy',
  'no-answer': 'No answer',
  failed: 'Failed',
  canceled: 'Cancelled',
}

export function outcomeWords(call) {
  if (call.missed) return 'Missed'
  if (call.status === 'completed') return ''
  return OUTCOME_WORDS[call.status] || call.status
}

// The other side of the call: who the team called, or who called the team.
export function otherParty(call) {
  return call.direction === 'outbound' ? call.to : call.from
}
