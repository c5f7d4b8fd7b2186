// Call control from the page (SPEC §6): hold, transfer (cold or warm), complete or cancel
// a warm transfer, add a third party; and who is on the call, live from the server's
// call_participants events. The routes take the call's root CallSid: the browser's own
// leg for an outgoing call, its parent for an incoming one (learnt from call_status),
// or the call whose participants include this browser's leg (a transfer's target).
import { computed, ref, watch } from 'vue'
import { siteUrl } from './site.js'

const REMEMBERED_CALLS = 20
const UNREACHABLE = 'Shetphone’s server cannot be reached. Check the network connection.'

// call: the ref of useCalls (its rootSid and legSid); csrfToken: the page's; loggedOut(): to the login page.
export function useCallControl({ call, csrfToken, loggedOut }) {
  const latest = new Map() // root CallSid -> its last call_participants payload, even before the call is known
  const view = ref(null) // the active call's participants, transfer and conference
  const pending = ref('') // the action waiting for the server's answer
  const problem = ref('') // the server's words when it refused the last action: said once
  const notice = ref('') // what happened on the call ("bob did not answer; …")

  const rootSid = computed(() => (call.value && call.value.rootSid) || null)
  const outside = computed(() => (view.value ? view.value.participants.find((p) => p.label === 'outside') : null))
  const held = computed(() => Boolean(outside.value && outside.value.held))
  const transfer = computed(() => (view.value && view.value.transfer) || null)
  // Whoever is still on the call or being rung; those who left drop off the list.
  const participants = computed(() => (view.value ? view.value.participants.filter((p) => p.status !== 'left') : []))

  watch(rootSid, (sid) => {
    view.value = sid ? latest.get(sid) || null : null
    problem.value = ''
    notice.value = ''
  })

  function onParticipants(payload) {
    latest.delete(payload.call_sid)
    latest.set(payload.call_sid, payload)
    if (latest.size > REMEMBERED_CALLS) latest.delete(latest.keys().next().value)
    const current = call.value
    if (current && !current.rootSid && current.legSid && payload.participants.some((p) => p.call_sid === current.legSid)) {
      current.rootSid = payload.call_sid // a call transferred or added to this browser
    }
    if (rootSid.value === payload.call_sid) view.value = payload
  }

  function onNotice(payload) {
    if (payload.call_sid === rootSid.value) notice.value = payload.notice
  }

  async function send(action, body = {}) {
    if (!rootSid.value || pending.value) return false
    pending.value = action
    problem.value = ''
    try {
      const response = await fetch(siteUrl(`calls/${encodeURIComponent(rootSid.value)}/${action}`), {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'X-CSRFToken': csrfToken },
        body: JSON.stringify(body),
      })
      if (response.status === 401) {
        loggedOut()
        return false
      }
      const answer = await response.json().catch(() => ({}))
      if (!response.ok) {
        problem.value = answer.error || `The server could not do that (${response.status}).`
        return false
      }
      if (answer.participants) onParticipants(answer)
      return true
    } catch {
      problem.value = UNREACHABLE
      return false
    } finally {
      pending.value = ''
    }
  }

  return {
    rootSid, view, participants, held, transfer, pending, problem, notice, onParticipants, onNotice,
    hold: (on) => send('hold', { hold: on }),
    // The Team panel's "transfer to / add an available teammate in one click" calls these with a user name.
    transferTo: (to, mode) => send('transfer', { to, mode }),
    complete: () => send('transfer/complete'),
    cancel: () => send('transfer/cancel'),
    add: (to) => send('add', { to }),
  }
}
