// What the tab (and an installed window's title bar) says, for a page left open all day
// in a background tab: a call ringing, a call in progress, missed calls. The missed
// count also goes on an installed app's icon, where the browser has navigator.setAppBadge.
import { watch, watchEffect } from 'vue'

// Ringing wins over a call in progress (a second call waiting); the missed count leads in every state.
function titleWords({ ringing, call, elapsed, missed, idle }) {
  let words = idle
  if (ringing) words = `Ringing: ${ringing.who}`
  else if (call && call.acceptedAt) words = `On a call ${elapsed}`
  else if (call) words = call.direction === 'outbound' ? `Calling: ${call.who}` : `Answering: ${call.who}`
  return missed ? `(${missed}) ${words}` : words
}

function showBadge(count) {
  if (!('setAppBadge' in navigator)) return
  // Outside an installed app the browser may refuse; the title says it anyway.
  const shown = count ? navigator.setAppBadge(count) : navigator.clearAppBadge()
  Promise.resolve(shown).catch(() => {})
}

// incoming, call, elapsed: from useCalls; unseenMissed: from useCallHistory.
export function useTabTitle({ incoming, call, elapsed, unseenMissed }) {
  const idle = document.title
  watchEffect(() => {
    document.title = titleWords({
      ringing: incoming.value, call: call.value, elapsed: elapsed.value, missed: unseenMissed.value.length, idle,
    })
  })
  watch(() => unseenMissed.value.length, showBadge, { immediate: true })
}
