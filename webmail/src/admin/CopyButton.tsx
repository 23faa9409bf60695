/**
 * A "Copy" button for a DNS record value. navigator.clipboard needs a secure context (https or
 * localhost) and permission; where it is missing or refused, a hidden textarea is selected and
 * document.execCommand('copy') tried; when both fail the status asks the user to copy by hand.
 * The outcome is announced in a polite live region next to the button.
 */
import { useEffect, useRef, useState } from 'react';

export function CopyButton({ value, label, describedBy }: { value: string; label: string; describedBy?: string }) {
  const [status, setStatus] = useState('');
  const timer = useRef<number | undefined>(undefined);
  useEffect(() => () => window.clearTimeout(timer.current), []);

  const copy = async () => {
    const ok = (await copyWithClipboardApi(value)) || copyWithTextarea(value);
    setStatus(ok ? 'Copied' : 'Copy failed: select the value and press Ctrl+C');
    window.clearTimeout(timer.current);
    timer.current = window.setTimeout(() => setStatus(''), 3000);
  };
  return (
    <span className="copy">
      <button type="button" className="secondary small" aria-label={label} aria-describedby={describedBy} onClick={() => void copy()}>
        Copy
      </button>
      <span role="status" aria-live="polite" className="copy-status">
        {status}
      </span>
    </span>
  );
}

async function copyWithClipboardApi(value: string): Promise<boolean> {
  if (!window.isSecureContext || !('clipboard' in navigator)) return false;
  try {
    await navigator.clipboard.writeText(value);
    return true;
  } catch {
    // permission refused or no user activation: the textarea route may still work
    return false;
  }
}

function copyWithTextarea(value: string): boolean {
  const area = document.createElement('textarea');
  area.value = value;
  area.setAttribute('readonly', '');
  area.style.position = 'fixed';
  area.style.opacity = '0';
  document.body.appendChild(area);
  area.select();
  let ok = false;
  try {
    // deprecated but still the only synchronous fallback browsers offer
    ok = document.execCommand('copy');
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}
