// Font Awesome with only the icons the page uses (tree-shaken), and its CSS
// from a file: the CSP allows no <style> element injected at run time.
import { config, library } from '@fortawesome/fontawesome-svg-core'
import '@fortawesome/fontawesome-svg-core/styles.css'
import {
  faArrowDown, faArrowRightArrowLeft, faArrowRotateRight, faArrowUp, faBell, faBellSlash, faCheck,
  faCircleCheck, faCircleExclamation, faCircleHalfStroke, faDeleteLeft, faGear, faHeadset, faMagnifyingGlass,
  faMicrophone, faMicrophoneSlash, faMoon, faPause, faPhone, faPhoneSlash, faPhoneVolume, faPlay, faPowerOff,
  faQuoteLeft, faSignal, faSun, faTriangleExclamation, faUserPlus, faVoicemail, faVolumeHigh, faWifi, faXmark,
} from '@fortawesome/free-solid-svg-icons'
import { FontAwesomeIcon } from '@fortawesome/vue-fontawesome'

config.autoAddCss = false
library.add(
  faArrowDown, faArrowRightArrowLeft, faArrowRotateRight, faArrowUp, faBell, faBellSlash, faCheck,
  faCircleCheck, faCircleExclamation, faCircleHalfStroke, faDeleteLeft, faGear, faHeadset, faMagnifyingGlass,
  faMicrophone, faMicrophoneSlash, faMoon, faPause, faPhone, faPhoneSlash, faPhoneVolume, faPlay, faPowerOff,
  faQuoteLeft, faSignal, faSun, faTriangleExclamation, faUserPlus, faVoicemail, faVolumeHigh, faWifi, faXmark,
)

export { FontAwesomeIcon }
