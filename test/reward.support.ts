/**
 * A deterministic synthetic preference set for the reward-model tests. The rule: the same story is told twice,
 * once ending happily (chosen) and once ending sadly (rejected); everything before the ending is identical, so the
 * reward model can only learn "happy endings are better". Lines use the admin export's preference format.
 */
const NAMES = ['Lily', 'Tom', 'Sue', 'Ben', 'Mia', 'Max', 'Anna', 'Sam', 'Lucy', 'Tim'];
const ANIMALS = ['dog', 'cat', 'bird', 'fish', 'frog', 'bunny', 'duck', 'bear'];
const PLACES = ['the park', 'the garden', 'the forest', 'the beach', 'the house'];
/** Names and animals never used by syntheticPreferences(n): held-out stories the model has not seen. */
const UNSEEN_NAMES = ['Kim', 'Joe', 'Ella', 'Jack'];
const UNSEEN_ANIMALS = ['horse', 'lion', 'pig'];
const HAPPY = ['They lived happily ever after.', 'Everyone was happy and they smiled all day.', 'They hugged and played and were very happy.'];
const SAD = ['They were sad forever.', 'Everyone cried and felt very sad.', 'The toy broke and they cried all day.'];

export interface SyntheticPreference {
  prompt: { role: 'user'; content: string }[];
  chosen: { role: 'assistant'; content: string }[];
  rejected: { role: 'assistant'; content: string }[];
}

/**
 * n pairs; pair i is a function of i only (no RNG), so the set never changes between runs. unseen: names and
 * animals outside the training vocabulary (the endings are the same pools).
 */
export function syntheticPreferences(n: number, opts: { unseen?: boolean } = {}): SyntheticPreference[] {
  const names = opts.unseen ? UNSEEN_NAMES : NAMES;
  const animals = opts.unseen ? UNSEEN_ANIMALS : ANIMALS;
  return Array.from({ length: n }, (_, i) => {
    const name = names[i % names.length];
    const animal = animals[Math.floor(i / names.length) % animals.length];
    const place = PLACES[(i * 7) % PLACES.length];
    const body = `${name} had a ${animal}. One day, ${name} and the ${animal} went to ${place}.`;
    return {
      prompt: [{ role: 'user' as const, content: `Tell me a story about a ${animal}.` }],
      chosen: [{ role: 'assistant' as const, content: `${body} ${HAPPY[i % HAPPY.length]}` }],
      rejected: [{ role: 'assistant' as const, content: `${body} ${SAD[(i * 5 + 1) % SAD.length]}` }],
    };
  });
}

export const toJsonl = (rows: readonly object[]): string => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';

export interface SyntheticKtoExample {
  prompt: { role: 'user'; content: string }[];
  completion: { role: 'assistant'; content: string }[];
  label: boolean;
}

/**
 * n unpaired KTO lines (the admin export's kto format) from the stories of syntheticPreferences(n): line i tells story
 * i with its happy ending (label true) when i % 4 < 2, else with its sad one (label false). Half are desirable, and over
 * any 20 lines every name meets both labels, so only the ending tells them apart.
 */
export function syntheticKto(n: number, opts: { unseen?: boolean } = {}): SyntheticKtoExample[] {
  return syntheticPreferences(n, opts).map((p, i) => {
    const label = i % 4 < 2;
    return { prompt: p.prompt, completion: label ? p.chosen : p.rejected, label };
  });
}
