/**
 * Shows a message or an answer as its parts (message-parts.ts): text as written, a tool call as the function's name
 * and its arguments, a tool result, and thinking folded away. Presentation only.
 */
import { messageParts } from './message-parts';

export function MessageView({ text, className = 'pre' }: { text: string; className?: string }) {
  const parts = messageParts(text);
  if (parts.length === 0) return <p className={className}>{text === '' ? <span className="muted">(empty)</span> : text}</p>;
  return (
    <div className={className === 'pre' ? undefined : className}>
      {parts.map((p, i) => {
        switch (p.kind) {
          case 'text':
            return (
              <p key={i} className="pre">
                {p.text}
              </p>
            );
          case 'tool_call':
            return (
              <div key={i} className="tool-part" aria-label={`Tool call ${p.name}`}>
                <span className="tool-label">calls</span> <code>{p.name}</code>
                <pre className="mono small">{p.arguments}</pre>
              </div>
            );
          case 'tool_result':
            return (
              <div key={i} className="tool-part" aria-label="Tool result">
                <span className="tool-label">tool result</span>
                <pre className="mono small">{p.text}</pre>
              </div>
            );
          case 'thinking':
            return (
              <details key={i} className="tool-part">
                <summary className="tool-label">thinking</summary>
                <p className="pre muted">{p.text}</p>
              </details>
            );
        }
      })}
    </div>
  );
}
