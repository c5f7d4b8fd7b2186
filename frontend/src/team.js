// The team's presence (SPEC §7): GET /team when the connection (re)opens, `presence` events
// in between, and the person's own do-not-disturb (POST /me/dnd).
import { computed, ref } from 'vue'
import { postJson } from './csrf.js'
import { siteUrl } from './site.js'

export const STATE_WORDS = {
  available: 'Available',
  busy: 'On a call',
  dnd: 'Do not disturb',
  offline: 'Offline',
}

// loggedOut(): the session ended (401); problem(text): tell the person something failed.
export function useTeam({ config, loggedOut, problem }) {
  const identity = config.identity
  const members = ref([]) // [{ user, state }], by name, the person included
  const state = ref('loading') // loading, ready, error
  const switching = ref(false) // a DND change is on its way
  let latestRequest = 0

  const me = computed(() => members.value.find((member) => member.user === identity) || null)
  const dnd = computed(() => Boolean(me.value && me.value.state === 'dnd'))

  async function load() {
    const request = ++latestRequest
    try {
      const response = await fetch(siteUrl('team'), { credentials: 'same-origin', headers: { Accept: 'application/json' } })
      if (response.status === 401) return loggedOut()
      if (!response.ok) throw new Error(`the server answered ${response.status}`)
      const body = await response.json()
      if (request !== latestRequest) return // a newer answer wins
      members.value = body.team
      state.value = 'ready'
    } catch (error) {
      if (request !== latestRequest) return
      state.value = 'error'
      console.warn('team:', error)
    }
  }

  // A `presence` event: { user, state }. The server sends only teammates' (and the person's own).
  function onPresence({ user, state: next }) {
    latestRequest++ // an answer to a request sent before this event is older than it
    const known = members.value.find((member) => member.user === user)
    if (known) known.state = next
    else members.value = [...members.value, { user, state: next }].sort((a, b) => a.user.localeCompare(b.user))
  }

  async function setDnd(on) {
    if (switching.value) return
    switching.value = true
    try {
      const response = await postJson('me/dnd', { dnd: on }, config)
      if (response.status === 401) return loggedOut()
      if (!response.ok) throw new Error(`the server answered ${response.status}`)
      onPresence({ user: identity, state: (await response.json()).state })
    } catch (error) {
      console.warn('do not disturb:', error)
      problem(on ? 'Do not disturb could not be turned on; try again.' : 'Do not disturb could not be turned off; try again.')
    } finally {
      switching.value = false
    }
  }

  return { members, state, dnd, switching, load, onPresence, setDnd }
}
