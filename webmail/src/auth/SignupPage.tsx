/** Placeholder: replaced by the page's implementation. */
export function SignupPage() {
  return <p>SignupPage</p>;
}
