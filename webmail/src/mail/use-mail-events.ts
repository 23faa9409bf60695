/**
 * New mail without reloading: the server's event stream (GET /api/webmail/events, SSE over
 * fetch because EventSource cannot send the bearer token). Each `mailbox` event calls
 * `onChange` (bursts are coalesced). A dropped stream reconnects with a growing delay; after
 * several failures in a row the page polls every 30 s instead, and keeps trying the stream
 * now and then in case it comes back.
 */
import { useEffect, useRef } from 'react';
import { streamEvents } from '../api';

const POLL_MS = 30_000;
const FAILURES_BEFORE_POLLING = 3;
const COALESCE_MS = 250;

/** `enabled` false (an account without a mailbox) opens nothing. */
export function useMailEvents(onChange: () => void, enabled = true): void {
  const latest = useRef(onChange);
  useEffect(() => {
    latest.current = onChange;
  }, [onChange]);

  useEffect(() => {
    if (!enabled) return;
    const abort = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    let poller: ReturnType<typeof setInterval> | undefined;
    const changed = () => {
      clearTimeout(timer);
      timer = setTimeout(() => latest.current(), COALESCE_MS);
    };
    const startPolling = () => {
      poller ??= setInterval(() => latest.current(), POLL_MS);
    };
    const stopPolling = () => {
      clearInterval(poller);
      poller = undefined;
    };
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

    void (async () => {
      let failures = 0;
      let everOpened = false;
      while (!abort.signal.aborted) {
        let opened = false;
        try {
          await streamEvents(
            '/api/webmail/events',
            (type) => {
              if (type === 'ready') {
                opened = true;
                failures = 0;
                stopPolling();
                // whatever arrived while the stream was down
                if (everOpened) changed();
                everOpened = true;
              } else if (type === 'mailbox') changed();
            },
            abort.signal,
          );
        } catch {
          // counted below; the loop decides between retrying and polling
        }
        if (abort.signal.aborted) return;
        if (!opened) failures += 1;
        if (failures >= FAILURES_BEFORE_POLLING) startPolling();
        await sleep(Math.min(POLL_MS, 1000 * 2 ** Math.min(failures, 5)));
      }
    })();

    return () => {
      abort.abort();
      clearTimeout(timer);
      stopPolling();
    };
  }, [enabled]);
}
