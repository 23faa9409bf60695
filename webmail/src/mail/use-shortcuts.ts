/**
 * The Mail section's keyboard shortcuts (Gmail's letters): j/k next/previous, o or Enter open,
 * c compose, r reply, a reply all, f forward, e archive, # delete, / search, Escape close.
 * Ignored while typing in a field (except Escape) and with Ctrl/Alt/Meta held, so browser and
 * screen-reader keys keep working; Enter on a focused link or button keeps its own meaning.
 */
import { useEffect, useRef } from 'react';

export interface ShortcutHandlers {
  next: () => void;
  previous: () => void;
  open: () => void;
  compose: () => void;
  reply: (all: boolean) => void;
  forward: () => void;
  archive: () => void;
  remove: () => void;
  search: () => void;
  escape: () => void;
}

function isTyping(target: EventTarget | null): boolean {
  if (!(target instanceof HTMLElement)) return false;
  return target.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName);
}

function isActivatable(target: EventTarget | null): boolean {
  return target instanceof HTMLElement && ['A', 'BUTTON', 'SUMMARY'].includes(target.tagName);
}

export function useShortcuts(handlers: ShortcutHandlers): void {
  const latest = useRef(handlers);
  useEffect(() => {
    latest.current = handlers;
  });

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented) return;
      const h = latest.current;
      if (e.key === 'Escape') {
        h.escape();
        return;
      }
      if (isTyping(e.target)) return;
      const actions: Record<string, (() => void) | undefined> = {
        j: h.next,
        k: h.previous,
        o: h.open,
        c: h.compose,
        r: () => h.reply(false),
        a: () => h.reply(true),
        f: h.forward,
        e: h.archive,
        '#': h.remove,
        '/': h.search,
        Enter: isActivatable(e.target) ? undefined : h.open,
      };
      const action = actions[e.key];
      if (!action) return;
      e.preventDefault();
      action();
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, []);
}
