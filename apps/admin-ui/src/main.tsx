/**
 * Entry of the admin review UI bundle: mounts the app shell into #root. Nothing else.
 */
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { AppShell } from './app.shell';
import './styles.css';

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <AppShell />
  </StrictMode>,
);
