// Font Awesome with only the icons the page uses (tree-shaken), and its CSS
// from a file: the CSP allows no <style> element injected at run time.
import { config, library } from '@fortawesome/fontawesome-svg-core'
import '@fortawesome/fontawesome-svg-core/styles.css'
import {
  faArrowRotateRight, faBell, faCircleCheck, faCircleExclamation, faDeleteLeft, faGear, faHeadset,
  faMagnifyingGlass, faMicrophone, faMicrophoneSlash, faPhone, faPhoneSlash, faPhoneVolume, faPowerOff,
  faSignal, faTriangleExclamation, faVolumeHigh, faWifi,
} from '@fortawesome/free-solid-svg-icons'
import { FontAwesomeIcon } from '@fortawesome/vue-fontawesome'

config.autoAddCss = false
library.add(
  faArrowRotateRight, faBell, faCircleCheck, faCircleExclamation, faDeleteLeft, faGear, faHeadset,
  faMagnifyingGlass, faMicrophone, faMicrophoneSlash, faPhone, faPhoneSlash, faPhoneVolume, faPowerOff,
  faSignal, faTriangleExclamation, faVolumeHigh, faWifi,
)

export { FontAwesomeIcon }
