/**
 * The Mail section (`/mail/:folder/:id?`, `?q=` for a search): folders, the message list and
 * the reading pane or the compose form, side by side on a desk and stacked on a phone. The URL
 * holds the folder, the open message and the search, so back/forward and reloads keep the view;
 * the compose form is page state. Server events (use-mail-events) refresh the counts and the
 * list; every action updates both at once and lets the next refresh confirm it.
 */
import { useCallback, useEffect, useRef, useState, type FormEvent } from 'react';
import { api, ApiError } from '../api';
import { navigate, useLocation } from '../router';
import { ErrorBanner, Loading } from '../ui';
import { Compose } from './Compose';
import { EMPTY_COMPOSE, draftInit, forwardInit, replyInit, type ComposeInit } from './compose-text';
import { FolderNav } from './FolderNav';
import { ListHeader } from './ListHeader';
import { MessageList } from './MessageList';
import { MessageView, type MessageActions } from './MessageView';
import { displayName, findFolder, type Folder, type MessageDetail, type Summary } from './types';
import { useFolders } from './use-folders';
import { useMailEvents } from './use-mail-events';
import { useMessage } from './use-message';
import { useMessageList } from './use-message-list';
import { useShortcuts } from './use-shortcuts';
import './mail.css';

export function MailPage({ folder, messageId }: { folder: string; messageId: string | null }) {
  const { query } = useLocation();
  const q = query.get('q') ?? '';
  const folders = useFolders();
  const current = folders.folders ? findFolder(folders.folders, folder) : undefined;
  // a search spans every folder but Trash and Junk (the API's rule); `in:` narrows it
  const list = useMessageList(q ? null : folder, q);
  const open = useMessage(messageId);
  const [compose, setCompose] = useState<{ key: number; init: ComposeInit } | null>(null);
  const [cursorId, setCursorId] = useState<string | null>(null);
  const [foldersOpen, setFoldersOpen] = useState(false);
  const [actionError, setActionError] = useState<unknown>(null);
  const [searchText, setSearchText] = useState(q);
  const searchInput = useRef<HTMLInputElement>(null);
  const listScroll = useRef<HTMLElement>(null);
  const self = folders.mailbox?.address ?? '';

  useEffect(() => setSearchText(q), [q]);

  const href = useCallback(
    (id?: string) => `/mail/${encodeURIComponent(folder)}${id ? `/${encodeURIComponent(id)}` : ''}${q ? `?q=${encodeURIComponent(q)}` : ''}`,
    [folder, q],
  );

  const reloadAll = useCallback(() => {
    void folders.reload();
    void list.refresh();
  }, [folders, list]);
  const noMailbox = folders.error instanceof ApiError && folders.error.status === 403;
  useMailEvents(reloadAll, !noMailbox);

  // opening marks read (the API leaves that to the client)
  const openedId = open.message?.id;
  useEffect(() => {
    const m = open.message;
    if (!m || m.seen) return;
    api('PUT', `/api/webmail/messages/${m.id}`, { seen: true })
      .then(() => {
        open.patch({ seen: true });
        list.update(m.id, { seen: true });
        folders.adjustUnread(m.folder_id, -1);
      })
      .catch((err: unknown) => setActionError(err));
    // keyed on the id: only when a message is opened, not when "Mark unread" changes it later
  }, [openedId]);

  const startCompose = (init: ComposeInit) => setCompose({ key: Date.now(), init });

  const loadDetail = async (id: string): Promise<MessageDetail> =>
    open.message?.id === id ? open.message : api<MessageDetail>('GET', `/api/webmail/messages/${encodeURIComponent(id)}`);

  const openSummary = (m: Summary) => {
    setCursorId(m.id);
    setFoldersOpen(false);
    if (m.draft && current?.special_use === 'drafts') {
      loadDetail(m.id)
        .then((d) => startCompose(draftInit(d)))
        .catch((err: unknown) => setActionError(err));
      return;
    }
    setCompose(null);
    navigate(href(m.id));
  };

  const closeMessage = () => navigate(href());

  /** After a message leaves this list (moved, deleted): drop it, close it if open, recount. */
  const gone = (id: string) => {
    list.remove(id);
    if (id === messageId) closeMessage();
    void folders.reload();
  };

  const moveMessage = async (id: string, target: string) => {
    await api('PUT', `/api/webmail/messages/${id}`, { mailbox: target });
    gone(id);
  };

  const deleteMessage = async (id: string) => {
    await api('DELETE', `/api/webmail/messages/${id}`);
    gone(id);
  };

  /** e: into the user folder "Archive", made on first use. */
  const archive = async (id: string) => {
    let target: Folder | undefined = folders.folders?.find((f) => !f.special_use && f.name.toLowerCase() === 'archive');
    if (!target) {
      target = await api<Folder>('POST', '/api/webmail/mailboxes', { name: 'Archive' });
    }
    if (target.id === current?.id) return;
    await moveMessage(id, target.id);
  };

  const setFlags = async (m: MessageDetail, change: { seen?: boolean; flagged?: boolean }) => {
    await api('PUT', `/api/webmail/messages/${m.id}`, change);
    open.patch(change);
    list.update(m.id, change);
    if (change.seen !== undefined && change.seen !== m.seen) folders.adjustUnread(m.folder_id, change.seen ? -1 : 1);
  };

  const messageActions = (m: MessageDetail): MessageActions => ({
    reply: (all) => startCompose(replyInit(m, self, all)),
    forward: () => startCompose(forwardInit(m)),
    editDraft: () => startCompose(draftInit(m)),
    setSeen: (seen) => setFlags(m, { seen }),
    setFlagged: (flagged) => setFlags(m, { flagged }),
    move: (target) => moveMessage(m.id, target),
    remove: () => deleteMessage(m.id),
    close: closeMessage,
  });

  /** The message a shortcut acts on: the open one, else the one under the list cursor. */
  const targetId = () => messageId ?? cursorId;
  const act = (fn: () => Promise<void>) => {
    setActionError(null);
    fn().catch((err: unknown) => setActionError(err));
  };
  const step = (delta: number) => {
    const items = list.items;
    if (items.length === 0) return;
    const at = items.findIndex((m) => m.id === (cursorId ?? messageId));
    const index = at < 0 ? 0 : Math.min(items.length - 1, Math.max(0, at + delta));
    const next = items[index]!;
    if (index >= items.length - 3 && list.hasMore) list.loadMore();
    setCursorId(next.id);
    if (messageId && !compose) navigate(href(next.id));
    else {
      const link = document.querySelector<HTMLAnchorElement>(`[data-message-id="${CSS.escape(next.id)}"] a`);
      link?.focus();
      link?.scrollIntoView({ block: 'nearest' });
    }
  };

  useShortcuts({
    next: () => step(1),
    previous: () => step(-1),
    open: () => {
      const m = list.items.find((x) => x.id === cursorId);
      if (m) openSummary(m);
    },
    compose: () => startCompose(EMPTY_COMPOSE),
    reply: (all) => {
      const id = targetId();
      if (id) act(async () => startCompose(replyInit(await loadDetail(id), self, all)));
    },
    forward: () => {
      const id = targetId();
      if (id) act(async () => startCompose(forwardInit(await loadDetail(id))));
    },
    archive: () => {
      const id = targetId();
      if (id) act(() => archive(id));
    },
    remove: () => {
      const id = targetId();
      if (id) act(() => deleteMessage(id));
    },
    search: () => searchInput.current?.focus(),
    escape: () => {
      if (document.activeElement === searchInput.current) searchInput.current?.blur();
      else if (compose) setCompose(null);
      else if (messageId) closeMessage();
      else setFoldersOpen(false);
    },
  });

  const search = (e: FormEvent) => {
    e.preventDefault();
    const text = searchText.trim();
    setCompose(null);
    navigate(`/mail/${encodeURIComponent(folder)}${text ? `?q=${encodeURIComponent(text)}` : ''}`);
  };

  if (noMailbox) {
    return (
      <div className="no-mailbox">
        <h1>Mail</h1>
        <ErrorBanner error={folders.error} />
        <p>Mail needs a mailbox: an address on one of your organisation's domains. An owner or admin gives one under Admin → Users.</p>
      </div>
    );
  }

  const showPane = compose !== null || messageId !== null;
  const heading = q ? 'Search results' : current ? displayName(current) : folders.folders ? 'Unknown folder' : 'Mail';

  return (
    <div className={`mail${showPane ? ' has-pane' : ''}${foldersOpen ? ' folders-open' : ''}`}>
      <aside className="mail-sidebar">
        <FolderNav
          folders={folders.folders}
          mailbox={folders.mailbox}
          error={folders.error}
          current={q ? undefined : current}
          onChosen={() => {
            setFoldersOpen(false);
            setCompose(null);
          }}
          onCreated={folders.reload}
        />
      </aside>
      <section className="mail-list" ref={listScroll} aria-labelledby="list-heading">
        <div className="list-toolbar">
          <button type="button" className="secondary folders-toggle" aria-expanded={foldersOpen} onClick={() => setFoldersOpen((o) => !o)}>
            Folders
          </button>
          <button type="button" onClick={() => startCompose(EMPTY_COMPOSE)}>
            Compose
          </button>
          <form role="search" className="search-form" onSubmit={search}>
            <label htmlFor="mail-search" className="sr-only">
              Search mail
            </label>
            <input
              id="mail-search"
              ref={searchInput}
              type="search"
              placeholder="Search mail (from:, subject:, is:unread, …)"
              value={searchText}
              onChange={(e) => setSearchText(e.target.value)}
            />
          </form>
        </div>
        <ListHeader
          heading={heading}
          searching={q !== ''}
          folder={current}
          onEmptied={reloadAll}
          onDeleted={() => {
            void folders.reload();
            navigate('/mail/INBOX');
          }}
          onClearSearch={() => navigate(`/mail/${encodeURIComponent(folder)}`)}
        />
        <ErrorBanner error={actionError} onDismiss={() => setActionError(null)} />
        <MessageList
          list={list}
          showRecipients={!q && (current?.special_use === 'sent' || current?.special_use === 'drafts')}
          openId={messageId}
          cursorId={cursorId}
          hrefOf={(m) => href(m.id)}
          onOpen={openSummary}
          scrollRoot={listScroll}
        />
      </section>
      <section className="mail-pane" aria-label="Reading pane">
        {compose ? (
          <Compose key={compose.key} init={compose.init} onClose={() => setCompose(null)} onStored={reloadAll} />
        ) : messageId ? (
          <OpenPane open={open} folders={folders.folders ?? []} actions={messageActions} onClose={closeMessage} />
        ) : (
          <p className="empty pane-empty">Select a message to read it.</p>
        )}
      </section>
    </div>
  );
}

function OpenPane({ open, folders, actions, onClose }: { open: ReturnType<typeof useMessage>; folders: Folder[]; actions: (m: MessageDetail) => MessageActions; onClose: () => void }) {
  if (open.error) {
    return (
      <div className="pane-error">
        <ErrorBanner error={open.error} />
        <button type="button" className="secondary" onClick={onClose}>
          Back to list
        </button>
      </div>
    );
  }
  if (!open.message) return <Loading label="Loading message…" />;
  return <MessageView message={open.message} folders={folders} actions={actions(open.message)} />;
}
