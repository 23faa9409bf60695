/**
 * The message list: `<ul aria-label="Messages">` of the loaded pages only (50 rows each), a
 * sentinel below them that an IntersectionObserver watches to fetch the next page as the reader
 * scrolls, and the loading, empty and error states. Rows carry their markers (unread, flagged,
 * attachments) as labelled elements; opening is a plain link so it works with the keyboard and
 * with "open in new tab".
 */
import { useEffect, useRef, type MouseEvent, type RefObject } from 'react';
import { Empty, ErrorBanner, Loading, formatListDate } from '../ui';
import { PaperclipIcon } from './icons';
import type { MessageListState } from './use-message-list';
import { shortAddress, type Summary } from './types';

interface Props {
  list: MessageListState;
  /** Sent and Drafts show who a message went to rather than who sent it. */
  showRecipients: boolean;
  openId: string | null;
  cursorId: string | null;
  hrefOf: (m: Summary) => string;
  onOpen: (m: Summary) => void;
  scrollRoot: RefObject<HTMLElement | null>;
}

export function MessageList({ list, showRecipients, openId, cursorId, hrefOf, onOpen, scrollRoot }: Props) {
  const sentinel = useRef<HTMLDivElement>(null);
  const { loadMore, hasMore, loading } = list;

  useEffect(() => {
    const target = sentinel.current;
    if (!target || !hasMore || loading) return;
    const observer = new IntersectionObserver(
      (entries) => {
        if (entries.some((e) => e.isIntersecting)) loadMore();
      },
      { root: scrollRoot.current, rootMargin: '0px 0px 600px 0px' },
    );
    observer.observe(target);
    return () => observer.disconnect();
  }, [loadMore, hasMore, loading, scrollRoot]);

  if (list.loading) return <Loading label="Loading messages…" />;
  return (
    <>
      <ErrorBanner error={list.error} />
      {list.items.length === 0 && !list.error ? <Empty>No messages</Empty> : null}
      <ul aria-label="Messages" className="message-list">
        {list.items.map((m) => (
          <Row key={m.id} m={m} showRecipients={showRecipients} open={m.id === openId} cursor={m.id === cursorId} href={hrefOf(m)} onOpen={onOpen} />
        ))}
      </ul>
      <div ref={sentinel} className="list-sentinel" aria-hidden="true" />
      {list.loadingMore && <Loading label="Loading more…" />}
      {hasMore && !list.loadingMore && (
        <div className="list-more">
          <button type="button" className="secondary" onClick={loadMore}>
            Load more
          </button>
        </div>
      )}
    </>
  );
}

function Row({ m, showRecipients, open, cursor, href, onOpen }: { m: Summary; showRecipients: boolean; open: boolean; cursor: boolean; href: string; onOpen: (m: Summary) => void }) {
  const click = (e: MouseEvent<HTMLAnchorElement>) => {
    if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    onOpen(m);
  };
  const who = showRecipients ? `To: ${m.to.map(shortAddress).join(', ') || '(no recipients)'}` : shortAddress(m.from);
  const classes = ['message-row', m.seen ? 'seen' : 'unseen', open ? 'open' : '', cursor ? 'cursor' : ''].filter(Boolean).join(' ');
  return (
    <li data-testid="message-row" data-message-id={m.id} data-unread={m.seen ? 'false' : 'true'} className={classes}>
      <a href={href} onClick={click} aria-current={open ? 'true' : undefined} className="row-link">
        <span className="row-top">
          <span className="row-from">{who}</span>
          <span className="row-markers">
            {!m.seen && <span className="marker-unread" role="img" aria-label="Unread" title="Unread" />}
            {m.flagged && (
              <span className="marker-flag" role="img" aria-label="Flagged" title="Flagged">
                ★
              </span>
            )}
            {m.has_attachments && (
              <span className="marker-attach" role="img" aria-label="Has attachments" title="Has attachments">
                <PaperclipIcon />
              </span>
            )}
            {m.draft && <span className="marker-draft">Draft</span>}
          </span>
          <time className="row-date" dateTime={m.date}>
            {formatListDate(m.date)}
          </time>
        </span>
        <span className="row-subject">{m.subject || '(no subject)'}</span>
        <span className="row-snippet">{m.snippet}</span>
      </a>
    </li>
  );
}
