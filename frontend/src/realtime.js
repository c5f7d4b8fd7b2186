// The Socket.IO connection to our own server: call status, participants, voicemail, presets, presence, session end.
import { io } from 'socket.io-client'
import { sitePath, siteUrl } from './site.js'

export function goToLogin() {
  window.location.assign(siteUrl('login') + '?next=' + encodeURIComponent(window.location.pathname))
}

// handlers: callStatus(payload), presetsChanged(), voicemail(payload), presence(payload), connection(state),
// callParticipants(payload), callNotice(payload) (call control)
// where state is 'connected' | 'reconnecting' | 'reconnected'.
export function connectRealtime(handlers) {
  const socket = io({ path: sitePath('socket.io'), withCredentials: true })
  let everConnected = false
  let lost = false
  // Once this page is going somewhere itself (Log out's form), the server ending its socket
  // is that going, not news: following it would race the form's own answer.
  let leaving = false
  window.addEventListener('beforeunload', () => { leaving = true })

  socket.on('connect', () => {
    handlers.connection(lost ? 'reconnected' : 'connected')
    everConnected = true
    lost = false
  })
  socket.on('disconnect', (reason) => {
    if (reason === 'io client disconnect') return
    // The server closes a socket itself only when the session ended; it will not take it back.
    if (reason === 'io server disconnect') {
      if (!leaving) goToLogin()
      return
    }
    lost = true
    handlers.connection('reconnecting')
  })
  socket.on('connect_error', () => {
    // The server refuses a socket without a logged-in session; then the client
    // stops trying (socket.active is false) and only logging in again helps.
    if (!socket.active) {
      goToLogin()
      return
    }
    if (everConnected || lost) {
      lost = true
      handlers.connection('reconnecting')
    }
  })
  socket.on('call_status', (payload) => handlers.callStatus(payload))
  socket.on('voicemail', (payload) => handlers.voicemail && handlers.voicemail(payload))
  socket.on('presets_changed', () => handlers.presetsChanged())
  socket.on('call_participants', (payload) => handlers.callParticipants && handlers.callParticipants(payload))
  socket.on('call_notice', (payload) => handlers.callNotice && handlers.callNotice(payload))
  socket.on('presence', (payload) => handlers.presence && handlers.presence(payload))
  socket.on('session_ended', () => {
    socket.disconnect()
    if (!leaving) window.location.assign(siteUrl('login'))
  })
  return socket
}
