/* SPDX-License-Identifier: MIT */
/*
 * dkimsignctl: the administrator's one tool for the token and its DKIM
 * keys.  It initializes the token, generates keys on it, imports existing
 * keys (one PEM file, or every key of an OpenDKIM KeyTable), lists them,
 * prints their DNS records, and retires and destroys them.  It talks to the
 * token directly (PKCS#11), with the PIN from the file the configuration
 * names or from a systemd credential.
 *
 * It must never take a PIN from the command line, never print a PIN or any
 * private key material, and never leave the token half changed: every input
 * is checked before the first write, and a multi-key import that fails
 * half-way removes what it added.
 *
 * Exit status: 0 success; 1 failure (one line on stderr says why); 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"
#include "dkimsign-build.h"

static const char *const opt_names[] = {
        "--domain", "--selector", "--algorithm", "--bits", "--so-pin-file", "--json", "--yes", "--config-out",
        "--resolver",
};

/* ---- main ---- */

static const struct command commands[] = {
        { "init-token", cmd_init_token, OPT_SO_PIN_FILE, 0, 0, "--so-pin-file FILE",
          "        initialize the configured token label on a free slot, with the user\n"
          "        PIN from [token] pin_file and the SO PIN from FILE\n" },
        { "keygen", cmd_keygen, OPT_DOMAIN | OPT_SELECTOR | OPT_ALGORITHM | OPT_BITS, 0, 0,
          "--domain D --selector S [--algorithm rsa|ed25519] [--bits N]",
          "        generate a key pair on the token, non-extractable (RSA 2048 bits by\n"
          "        default, 1024 to 4096) and print the DNS record to publish\n" },
        { "list", cmd_list, OPT_JSON, 0, 0, "[--json]",
          "        list the DKIM keys on the token: domain, selector, algorithm, bits,\n"
          "        state (pending, published, active, retired; and when DNS first showed\n"
          "        the record), created, origin (generated or imported), fingerprint\n" },
        { "dns-record", cmd_dns_record, OPT_DOMAIN | OPT_SELECTOR, 0, 0, "--domain D --selector S",
          "        print the TXT record to publish at S._domainkey.D\n" },
        { "import", cmd_import, OPT_DOMAIN | OPT_SELECTOR, 1, 1, "--domain D --selector S FILE",
          "        import an unencrypted PEM private key (PKCS#8 or PKCS#1; RSA or Ed25519)\n"
          "        into the token, for migration\n" },
        { "import-opendkim", cmd_import_opendkim, OPT_CONFIG_OUT, 1, 2,
          "KEYTABLE [SIGNINGTABLE] [--config-out FILE]",
          "        import every key of an OpenDKIM KeyTable, and print (or write to FILE)\n"
          "        the [domain] sections that do what the SigningTable did; all or nothing\n" },
        { "refresh", cmd_refresh, 0, 0, 0, "",
          "        look every key's record up in DNS now and write the key states, as\n"
          "        dkimsignd does every check_interval; for [dns] watch = timer, where a\n"
          "        timer runs it and dkimsignd stays off the network\n" },
        { "rotate", cmd_rotate, OPT_DOMAIN | OPT_SELECTOR | OPT_ALGORITHM | OPT_BITS, 0, 0,
          "--domain D [--algorithm rsa|ed25519] [--selector S] [--bits N]",
          "        generate the domain's next key (selector rYYYYMMDD or eYYYYMMDD by default)\n"
          "        as pending: it signs once DNS has shown its record for publish_wait, and\n"
          "        the older key of its algorithm retires retire_grace later\n" },
        { "retire", cmd_retire, OPT_DOMAIN | OPT_SELECTOR, 0, 0, "--domain D --selector S",
          "        mark the key retired (its end date, on the token): dkimsignd no longer\n"
          "        signs with it; it stays on the token\n" },
        { "destroy", cmd_destroy, OPT_DOMAIN | OPT_SELECTOR | OPT_YES, 0, 0, "--domain D --selector S [--yes]",
          "        destroy the key on the token, after asking on the terminal (or --yes)\n" },
        { "status", cmd_status, 0, 0, 0, "",
          "        the running dkimsignd's figures: keys, sessions, connections, queue depth,\n"
          "        requests signed, errors by kind, reloads (root or the daemon's user)\n" },
        { "reload", cmd_reload, 0, 0, 0, "",
          "        make the running dkimsignd re-read its configuration and keys, without\n"
          "        dropping connections (root or the daemon's user)\n" },
        { "metrics", cmd_metrics, 0, 0, 1, "[FILE]",
          "        the running dkimsignd's metrics in Prometheus' text format, on stdout or\n"
          "        into FILE, replaced whole (for node_exporter's textfile collector); root,\n"
          "        the daemon's user, or [metrics] allow\n" },
        { "check", cmd_check, OPT_JSON | OPT_RESOLVER, 1, 1, "DOMAIN [--json] [--resolver ADDR]",
          "        check the domain's SPF, the DNS record of each of its keys on the token\n"
          "        and DMARC, with a verdict and the fix for each finding; exit status 0 all\n"
          "        ok, 3 warnings, 4 errors, 5 a lookup failed for now (see docs/dns-check.md)\n" },
        { "records", cmd_records, OPT_JSON, 1, 1, "DOMAIN [--json]",
          "        print the SPF, DKIM and DMARC records to publish for the domain\n" },
};
static const size_t ncommands = sizeof(commands) / sizeof(commands[0]);

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: dkimsignctl [--config FILE] COMMAND [OPTIONS] [ARGS]\n"
                "\n"
                "Manage the DKIM keys that dkimsignd signs with; keys live in the PKCS#11\n"
                "token named in the configuration and never leave it.\n"
                "\n"
                "Commands:\n");
        for (size_t i = 0; i < ncommands; i++)
                fprintf(f, "  %s %s\n%s", commands[i].name, commands[i].synopsis, commands[i].help);
        fprintf(f,
                "\n"
                "Options:\n"
                "  -c, --config FILE   configuration file (default %s)\n"
                "  -h, --help          show this help, or a command's (dkimsignctl COMMAND --help)\n"
                "  -V, --version       show the version\n"
                "\n"
                "The PIN is read from [token] pin_file, or from the systemd credential 'pin'\n"
                "($CREDENTIALS_DIRECTORY/pin); never from the command line.\n"
                "Exit status: 0 success, 1 failure, 2 usage error.  See dkimsignctl(8).\n",
                DKIMSIGN_DEFAULT_CONFIG);
}

static void command_usage(FILE *f, const struct command *c)
{
        fprintf(f, "Usage: dkimsignctl [--config FILE] %s %s\n\n%s", c->name, c->synopsis, c->help);
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "config", required_argument, NULL, 'c' },
                { "domain", required_argument, NULL, 'd' },
                { "selector", required_argument, NULL, 's' },
                { "algorithm", required_argument, NULL, 'a' },
                { "bits", required_argument, NULL, 'b' },
                { "so-pin-file", required_argument, NULL, 'S' },
                { "config-out", required_argument, NULL, 'o' },
                { "resolver", required_argument, NULL, 'R' },
                { "json", no_argument, NULL, 'j' },
                { "yes", no_argument, NULL, 'y' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { 0 },
        };
        struct options o = { .config = DKIMSIGN_DEFAULT_CONFIG };
        const struct command *cmd = NULL;
        bool help = false;
        char *end;
        int opt, status;

        opterr = 0; /* its messages would start with argv[0], not "dkimsignctl: " */
        while ((opt = getopt_long(argc, argv, ":c:d:s:a:b:S:o:R:jyhV", opts, NULL)) != -1) {
                switch (opt) {
                case 'c': o.config = optarg; break;
                case 'd': o.domain = optarg; o.given |= OPT_DOMAIN; break;
                case 's': o.selector = optarg; o.given |= OPT_SELECTOR; break;
                case 'a': o.algorithm = optarg; o.given |= OPT_ALGORITHM; break;
                case 'b':
                        errno = 0;
                        o.bits = (unsigned) strtoul(optarg, &end, 10);
                        if (errno || *end || !*optarg || optarg[0] == '-')
                                return usage_error("--bits takes a number");
                        o.given |= OPT_BITS;
                        break;
                case 'S': o.so_pin_file = optarg; o.given |= OPT_SO_PIN_FILE; break;
                case 'o': o.config_out = optarg; o.given |= OPT_CONFIG_OUT; break;
                case 'R': o.resolver = optarg; o.given |= OPT_RESOLVER; break;
                case 'j': o.json = true; o.given |= OPT_JSON; break;
                case 'y': o.yes = true; o.given |= OPT_YES; break;
                case 'h': help = true; break;
                case 'V': printf("dkimsignctl %s\n", DKIMSIGN_VERSION); return 0;
                case ':': return usage_error("%s needs a value (see dkimsignctl --help)", argv[optind - 1]);
                default:
                        if (optopt)
                                return usage_error("unknown option -%c (see dkimsignctl --help)", optopt);
                        /* Never echo a value: "--pin=1234" must not reach a log. */
                        end = argv[optind - 1];
                        if (strncmp(end, "--pin", 5) == 0 || strncmp(end, "--so-pin=", 9) == 0)
                                return usage_error("PINs are never taken from the command line: set [token] "
                                                   "pin_file, or pass a 'pin' credential");
                        return usage_error("unknown option %.*s (see dkimsignctl --help)", (int) strcspn(end, "="),
                                           end);
                }
        }
        if (optind < argc) {
                for (size_t i = 0; i < ncommands && !cmd; i++)
                        if (strcmp(argv[optind], commands[i].name) == 0)
                                cmd = &commands[i];
                if (!cmd)
                        return usage_error("unknown command '%s' (see dkimsignctl --help)", argv[optind]);
        }
        if (help) {
                if (cmd)
                        command_usage(stdout, cmd);
                else
                        usage(stdout);
                return 0;
        }
        if (!cmd)
                return usage_error("no command given (see dkimsignctl --help)");
        for (size_t i = 0; i < sizeof(opt_names) / sizeof(opt_names[0]); i++)
                if (o.given & ~cmd->opts & (1u << i))
                        return usage_error("%s does not take %s (see dkimsignctl %s --help)", cmd->name,
                                           opt_names[i], cmd->name);
        /* Every command sees --domain in A-label form, the form of the
         * token's key names, the configuration and DNS. */
        if (o.domain) {
                static char domain[DKIM_DOMAIN_SIZE];

                status = domain_arg(o.domain, domain);
                if (status)
                        return status;
                o.domain = domain;
        }
        o.args = argv + optind + 1;
        o.nargs = (size_t) (argc - optind - 1);
        if (o.nargs < cmd->min_args || o.nargs > cmd->max_args) {
                fputs("dkimsignctl: wrong number of arguments; ", stderr);
                fprintf(stderr, "usage: dkimsignctl [--config FILE] %s %s\n", cmd->name, cmd->synopsis);
                return EXIT_USAGE;
        }
        status = cmd->run(&o);
        /* Output that did not reach its reader is a failure too (a full disk, a closed pipe). */
        if (fflush(stdout) != 0 || ferror(stdout)) {
                return die("writing the output: %s", strerror(errno));
        }
        return status;
}
