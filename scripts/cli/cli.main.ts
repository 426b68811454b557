/**
 * The `flywheel` command line: one subcommand per file (`<name>.command.ts`). Errors are one line on
 * stderr with a non-zero exit, never a stack trace for a user mistake.
 */
import { ModelLoadError } from '@flywheel/model';
import { GENERATE_USAGE, generateCommand } from './generate.command';
import { MODELS_USAGE, modelsCommand } from './models.command';
import { TRAIN_SFT_USAGE, trainSftCommand } from './train-sft.command';
import { TRAIN_REWARD_USAGE, trainRewardCommand } from './train-reward.command';
import { TRAIN_DPO_USAGE, trainDpoCommand } from './train-dpo.command';
import { TRAIN_KTO_USAGE, trainKtoCommand } from './train-kto.command';

const USAGE = `usage: flywheel <command> [options]\n\ncommands:\n  generate   ${GENERATE_USAGE.replace('usage: flywheel generate ', '')}\n  train sft  ${TRAIN_SFT_USAGE.replace('usage: flywheel train sft ', '')}\n  train reward  ${TRAIN_REWARD_USAGE.replace('usage: flywheel train reward ', '')}\n  train dpo  ${TRAIN_DPO_USAGE.replace('usage: flywheel train dpo ', '')}\n  train kto  ${TRAIN_KTO_USAGE.replace('usage: flywheel train kto ', '')}\n  models     ${MODELS_USAGE.replace('usage: flywheel models ', '')}\n`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'generate':
      return generateCommand(rest);
    case 'models':
      return modelsCommand(rest);
    case 'train':
      if (rest[0] === 'sft') return trainSftCommand(rest.slice(1));
      if (rest[0] === 'reward') return trainRewardCommand(rest.slice(1));
      if (rest[0] === 'dpo') return trainDpoCommand(rest.slice(1));
      if (rest[0] === 'kto') return trainKtoCommand(rest.slice(1));
      process.stderr.write(`flywheel train: unknown trainer ${JSON.stringify(rest[0] ?? '')}\n${TRAIN_SFT_USAGE}\n`);
      return 2;
    case undefined:
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`flywheel: unknown command ${JSON.stringify(command)}\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const known = err instanceof ModelLoadError || (err instanceof TypeError && 'code' in err && String((err as { code: unknown }).code).startsWith('ERR_PARSE_ARGS'));
    process.stderr.write(`flywheel: ${err instanceof Error ? err.message : String(err)}\n`);
    if (!known && err instanceof Error && process.env.FLYWHEEL_DEBUG) process.stderr.write(`${err.stack}\n`);
    process.exit(1);
  },
);
