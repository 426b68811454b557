/**
 * The app shell: recovers or asks for a session, then shows the top bar and one screen chosen by the
 * URL hash (#/inbox, #/c/<completion id>, #/exports, #/dashboard, #/models, #/ab, #/runs, #/runs/<run id>). Hash routes keep the gateway's static
 * serving trivial: every screen is /admin/index.html.
 */
import { lazy, Suspense, useCallback, useEffect, useState } from 'react';
import type { AdminSession } from '../../../libs/contracts/src/admin.schemas';
import { AbPage } from './ab.page';
import { adminApi } from './admin-api.client';
import { ConversationPage } from './conversation.page';
import { ExportsPage } from './exports.page';
import { InboxPage } from './inbox.page';
import { LoginPage } from './login.page';
import { ModelsPage } from './models.page';
import { useRoute, type Route } from './navigation';
import { ReviewProvider, ShortcutHelp, useReview, useShortcuts } from './review.context';
import { RunsPage } from './runs.page';

/** The charting library is most of the bundle: load it only when the dashboard opens. */
const DashboardPage = lazy(() => import('./dashboard.page').then((m) => ({ default: m.DashboardPage })));
const RunDetailPage = lazy(() => import('./run-detail.page').then((m) => ({ default: m.RunDetailPage })));

export function AppShell() {
  const [session, setSession] = useState<AdminSession | null | 'checking'>('checking');
  useEffect(() => {
    adminApi.session().then(setSession, () => setSession(null));
  }, []);
  const onUnauthorized = useCallback(() => setSession(null), []);
  if (session === 'checking') return <p className="muted pad">Loading…</p>;
  if (session === null) return <LoginPage onLoggedIn={setSession} />;
  return (
    <ReviewProvider onUnauthorized={onUnauthorized}>
      <Shell session={session} onLogout={() => setSession(null)} />
    </ReviewProvider>
  );
}

function Shell({ session, onLogout }: { session: AdminSession; onLogout(): void }) {
  const route = useRoute();
  const { notice } = useReview();
  const [help, setHelp] = useState(false);
  useShortcuts({ '?': () => setHelp(true) });
  const tab = (name: Route['name'], hash: string, label: string) => {
    const on = route.name === name || (name === 'runs' && route.name === 'run');
    return (
      <a href={hash} className={on ? 'tab active' : 'tab'} aria-current={on ? 'page' : undefined}>
        {label}
      </a>
    );
  };
  return (
    <div className="app">
      <header className="topbar">
        <span className="brand">Flywheel review</span>
        <nav aria-label="Sections">
          {tab('inbox', '#/inbox', 'Inbox')}
          {tab('dashboard', '#/dashboard', 'Dashboard')}
          {tab('exports', '#/exports', 'Exports')}
          {tab('runs', '#/runs', 'Runs')}
          {tab('models', '#/models', 'Models')}
          {tab('ab', '#/ab', 'A/B')}
        </nav>
        <span className="spacer" />
        <button type="button" className="ghost" onClick={() => setHelp(true)} aria-label="Keyboard shortcuts (?)">
          ?
        </button>
        <span className="muted small" title="admin key id (the audit trail's actor)">
          {session.key_id}
        </span>
        <button
          type="button"
          onClick={async () => {
            await adminApi.logout().catch(() => undefined);
            onLogout();
          }}
        >
          Sign out
        </button>
      </header>
      <div role="status" aria-live="polite" className={`notice ${notice ? notice.tone : 'hidden'}`}>
        {notice?.text ?? ''}
      </div>
      {route.name === 'inbox' ? <InboxPage /> : null}
      {route.name === 'conversation' ? <ConversationPage id={route.id} /> : null}
      {route.name === 'exports' ? <ExportsPage /> : null}
      {route.name === 'models' ? <ModelsPage /> : null}
      {route.name === 'ab' ? <AbPage /> : null}
      {route.name === 'runs' ? <RunsPage /> : null}
      {route.name === 'run' ? (
        <Suspense fallback={<p className="muted pad">Loading charts…</p>}>
          <RunDetailPage key={route.id} id={route.id} />
        </Suspense>
      ) : null}
      {route.name === 'dashboard' ? (
        <Suspense fallback={<p className="muted pad">Loading charts…</p>}>
          <DashboardPage />
        </Suspense>
      ) : null}
      <ShortcutHelp open={help} onClose={() => setHelp(false)} />
    </div>
  );
}
