// The login page is plain HTML; this entry only brings the shared styles.
import './styles/base.css'
