/**
 * Hash navigation for the admin app: the route a URL hash names, a hook that follows it, and `go` to move.
 * Its own module so pages can navigate without importing the app shell that imports them.
 */
import { useEffect, useState } from 'react';

export type Route = { name: 'inbox' } | { name: 'conversation'; id: string } | { name: 'exports' } | { name: 'dashboard' } | { name: 'models' } | { name: 'ab' } | { name: 'runs' } | { name: 'run'; id: string };

export function parseRoute(hash: string): Route {
  const m = /^#\/c\/(.+)$/.exec(hash);
  if (m) return { name: 'conversation', id: decodeURIComponent(m[1]!) };
  const run = /^#\/runs\/(.+)$/.exec(hash);
  if (run) return { name: 'run', id: decodeURIComponent(run[1]!) };
  if (hash === '#/runs') return { name: 'runs' };
  if (hash === '#/exports') return { name: 'exports' };
  if (hash === '#/dashboard') return { name: 'dashboard' };
  if (hash === '#/models') return { name: 'models' };
  if (hash === '#/ab') return { name: 'ab' };
  return { name: 'inbox' };
}

export const go = (hash: string) => {
  window.location.hash = hash;
};

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(window.location.hash));
  useEffect(() => {
    const on = () => setRoute(parseRoute(window.location.hash));
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return route;
}
