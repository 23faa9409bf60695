/** Placeholder: replaced by the page's implementation. */
export function SettingsPage() {
  return <p>SettingsPage</p>;
}
