// Phone numbers as a person types them: cleaning, as-you-type formatting, validation.
import { AsYouType, getCountries, getCountryCallingCode, parsePhoneNumberFromString } from 'libphonenumber-js'

const regionNames = typeof Intl.DisplayNames === 'function' ? new Intl.DisplayNames(['en'], { type: 'region' }) : null

export function regionName(code) {
  return (regionNames && regionNames.of(code)) || code
}

export function regionOptions(allowed) {
  const codes = allowed && allowed.length ? allowed : getCountries()
  return codes
    .map((code) => ({ code, label: `${regionName(code)} (+${getCountryCallingCode(code)})` }))
    .sort((a, b) => a.label.localeCompare(b.label))
}

// What a person means by a pasted or typed number: digits and a leading +.
// Spaces, dashes, brackets, dots and a tel: prefix are formatting, not part of it.
export function cleanNumber(text) {
  let value = String(text || '').trim()
  try {
    value = decodeURIComponent(value)
  } catch {
    // not URL-encoded: keep as it is
  }
  value = value.replace(/^tel:/i, '').replace(/;.*$/, '').trim()
  const international = value.startsWith('+')
  // "+44 (0)1595 …": the bracketed 0 is the national prefix, not dialled from abroad.
  if (international) value = value.replace(/\(0\)/g, '')
  const digits = value.replace(/\D/g, '')
  return (international ? '+' : '') + digits
}

export function formatNumber(raw, region) {
  if (!raw) return ''
  return new AsYouType(region || undefined).input(raw)
}

// { valid, e164, region, problem }: problem says in words why Call is disabled.
export function checkNumber(raw, region, allowedRegions) {
  if (!raw) return { valid: false, e164: null, region: null, problem: '' }
  const parsed = parsePhoneNumberFromString(raw, region || undefined)
  if (!parsed || !parsed.isValid()) {
    const where = raw.startsWith('+') ? '' : ` in ${regionName(region)}`
    return { valid: false, e164: null, region: null, problem: `Not a valid phone number${where} yet.` }
  }
  const country = parsed.country || null
  if (allowedRegions && allowedRegions.length && country && !allowedRegions.includes(country)) {
    return { valid: false, e164: parsed.number, region: country, problem: `Calls to ${regionName(country)} are not allowed.` }
  }
  return { valid: true, e164: parsed.number, region: country, problem: '' }
}

// The nicest way to show a full number: international format, e.g. +44 1595 123456.
export function displayNumber(e164) {
  const parsed = parsePhoneNumberFromString(String(e164 || ''))
  return parsed ? parsed.formatInternational() : String(e164 || '')
}

export function regionOfNumber(e164) {
  const parsed = parsePhoneNumberFromString(String(e164 || ''))
  return parsed ? parsed.country || null : null
}
