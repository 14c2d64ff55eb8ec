import { commands } from './commands.ts';

function help(): string {
  const width = Math.max(...commands.map((c) => c.usage.length));
  return ['usage: marquee <command> [options]', '', ...commands.map((c) => `  ${c.usage.padEnd(width)}  ${c.summary}`)].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (!name || name === 'help' || name === '--help' || name === '-h') {
    console.log(help());
    return name ? 0 : 2;
  }
  // Grouped commands ("eval offline") take two words; single ones take one.
  const grouped = commands.find((c) => c.name === `${name} ${args[0]}`);
  const command = grouped ?? commands.find((c) => c.name === name);
  if (!command) {
    console.error(`marquee: unknown command "${[name, ...args.slice(0, 1)].join(' ')}"\n\n${help()}`);
    return 2;
  }
  return (await command.run(grouped ? args.slice(1) : args)) ?? 0;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => {
    console.error(`marquee: ${(err as Error).message}`);
    process.exitCode = 1;
  },
);
