/* SPDX-License-Identifier: MIT */
/*
 * opendkim-verify - libopendkim as a separate DKIM verifier program, with the
 * same interface as maildkim-verify.pl and dkimpy-verify.py:
 *
 *     opendkim-verify --keytable FILE MSGFILE...
 *
 * FILE holds one key record a line, `selector._domainkey.domain TXT-text`.
 * It is handed to libopendkim as is (DKIM_OPTS_QUERYMETHOD = DKIM_QUERY_FILE,
 * DKIM_OPTS_QUERYINFO = FILE): the library's own file query looks the name
 * up there, and a name that is not listed gives "no key" (NXDOMAIN).  No DNS.
 *
 * For each MSGFILE one line: `MSGFILE<TAB>v1,v2,...`, one verdict per
 * DKIM-Signature field from the top: pass, fail, or skip (the library was
 * built without the signature's algorithm); `none` when the message has no
 * DKIM-Signature field.  Keys under 1024 bits do not pass
 * (DKIM_OPTS_MINKEYBITS); libopendkim has no switch against rsa-sha1, so
 * rsa-sha1 signatures get whatever the library answers.
 * LF line ends are turned into CRLF and a final CRLF is added if missing.
 * Exit 0 when every file was processed, 2 on usage error or unreadable input.
 *
 * The message goes through dkim_chunk() + dkim_eom().  dkim_chunk() refuses
 * the whole header block when one DKIM-Signature field cannot be parsed
 * (e.g. "DKIM-Signature: synerr"); the message is then fed again field by
 * field with dkim_header(), as a milter does, so the other signatures still
 * get the library's verdict and the refused field gets "fail".
 * The library's siglist follows header order but leaves out refused fields;
 * each signature is paired with its field by the b= value.
 * Note: with DKIM_QUERY_FILE the library still checks q= (q=http fails);
 * only an application key-lookup callback skips that check.
 */
/* dkim.h uses the BSD types u_char, u_int, u_long from <sys/types.h> */
#define _DEFAULT_SOURCE

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <dkim.h>

#define PROG "opendkim-verify"

/* ---------- small helpers ---------- */

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL) {
		fprintf(stderr, PROG ": out of memory\n");
		exit(2);
	}
	return p;
}

/* Read a whole file; NULL (errno set) on failure. */
static unsigned char *read_file(const char *path, size_t *lenp)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	unsigned char *buf = NULL;
	size_t len = 0, cap = 0;

	if (f == NULL)
		return NULL;
	if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
		fclose(f);
		errno = EISDIR;
		return NULL;
	}
	for (;;) {
		if (len == cap) {
			unsigned char *nb;
			cap = cap ? cap * 2 : 65536;
			nb = realloc(buf, cap);
			if (nb == NULL) {
				free(buf);
				fclose(f);
				errno = ENOMEM;
				return NULL;
			}
			buf = nb;
		}
		size_t n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0) {
			if (ferror(f)) {
				int e = errno ? errno : EIO;
				free(buf);
				fclose(f);
				errno = e;
				return NULL;
			}
			break;
		}
	}
	fclose(f);
	if (buf == NULL)
		buf = xmalloc(1);
	*lenp = len;
	return buf;
}

/* LF -> CRLF (an existing CRLF is kept), and a final CRLF if missing. */
static unsigned char *to_crlf(const unsigned char *in, size_t len, size_t *outlen)
{
	unsigned char *out = xmalloc(2 * len + 2);
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
			out[o++] = '\r';
		out[o++] = in[i];
	}
	if (o > 0 && !(o >= 2 && out[o - 2] == '\r' && out[o - 1] == '\n')) {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	*outlen = o;
	return out;
}

/* Copy of s without any whitespace (b= values may be folded). */
static char *strip_ws(const char *s, size_t n)
{
	char *out = xmalloc(n + 1);
	size_t o = 0;

	for (size_t i = 0; i < n && s[i] != '\0'; i++)
		if (!isspace((unsigned char) s[i]))
			out[o++] = s[i];
	out[o] = '\0';
	return out;
}

/* ---------- DKIM-Signature fields of the header, top to bottom ---------- */

struct field {
	char *b;          /* b= value without whitespace, NULL if no b= tag */
	bool taken;       /* matched with one of the library's signatures */
	const char *verdict;
};

/*
 * Value of tag `tag` in a tag-list (RFC 6376 3.2), or NULL.  Used only to
 * pair the library's signatures with the header fields they came from.
 */
static char *tag_value(const char *v, size_t n, const char *tag)
{
	size_t i = 0, tlen = strlen(tag);

	while (i < n) {
		size_t start = i, end;
		while (i < n && v[i] != ';')
			i++;
		end = i;
		if (i < n)
			i++;                            /* skip ';' */
		while (start < end && isspace((unsigned char) v[start]))
			start++;
		const char *eq = memchr(v + start, '=', end - start);
		if (eq == NULL)
			continue;
		size_t nend = (size_t) (eq - v);
		while (nend > start && isspace((unsigned char) v[nend - 1]))
			nend--;
		if (nend - start == tlen && memcmp(v + start, tag, tlen) == 0) {
			size_t vs = (size_t) (eq - v) + 1;
			return strip_ws(v + vs, end - vs);
		}
	}
	return NULL;
}

/*
 * Step through the header fields of a CRLF message: sets *start and *flen
 * (the field with its folding, without the final CRLF) and returns true, or
 * returns false at the end of the header block, with *pos at the body (past
 * the empty line, or at the end when there is none).
 */
static bool next_field(const unsigned char *msg, size_t len, size_t *pos,
                       size_t *start, size_t *flen)
{
	size_t i = *pos;

	if (i >= len)
		return false;
	if (i + 1 < len && msg[i] == '\r' && msg[i + 1] == '\n') {
		*pos = i + 2;                           /* the empty line */
		return false;
	}
	*start = i;
	for (;;) {
		while (i < len && !(msg[i] == '\n' && i > 0 && msg[i - 1] == '\r'))
			i++;
		if (i < len)
			i++;                            /* past LF */
		if (i < len && (msg[i] == ' ' || msg[i] == '\t'))
			continue;                       /* folded */
		break;
	}
	*flen = i - *start;
	if (*flen >= 2 && msg[i - 2] == '\r' && msg[i - 1] == '\n')
		*flen -= 2;
	*pos = i;
	return true;
}

/* true iff the field (name up to the colon) is a DKIM-Signature field */
static bool is_dkim_sig(const char *f, size_t flen, size_t *voff)
{
	const char *colon = memchr(f, ':', flen);
	size_t nlen;

	if (colon == NULL)
		return false;
	nlen = (size_t) (colon - f);
	while (nlen > 0 && (f[nlen - 1] == ' ' || f[nlen - 1] == '\t'))
		nlen--;
	*voff = (size_t) (colon - f) + 1;
	return nlen == 14 && strncasecmp(f, "DKIM-Signature", 14) == 0;
}

/* Find the DKIM-Signature fields in the (CRLF) header block. */
static struct field *find_fields(const unsigned char *msg, size_t len, int *nfields)
{
	struct field *fields = NULL;
	int n = 0, cap = 0;
	size_t pos = 0, start = 0, flen = 0, voff = 0;

	while (next_field(msg, len, &pos, &start, &flen)) {
		const char *f = (const char *) msg + start;
		if (!is_dkim_sig(f, flen, &voff))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			struct field *nf = realloc(fields, (size_t) cap * sizeof *fields);
			if (nf == NULL) {
				fprintf(stderr, PROG ": out of memory\n");
				exit(2);
			}
			fields = nf;
		}
		fields[n].b = tag_value(f + voff, flen - voff, "b");
		fields[n].taken = false;
		fields[n].verdict = "fail";
		n++;
	}
	*nfields = n;
	return fields;
}

/* ---------- verdict of one libopendkim signature ---------- */

static const char *sig_verdict(DKIM_SIGINFO *sig)
{
	unsigned int flags = dkim_sig_getflags(sig);
	int err = dkim_sig_geterror(sig);

	if (err == DKIM_SIGERROR_OK &&
	    (flags & DKIM_SIGFLAG_IGNORE) == 0 &&
	    (flags & DKIM_SIGFLAG_PASSED) != 0 &&
	    dkim_sig_getbh(sig) == DKIM_SIGBH_MATCH)
		return "pass";

	if (err == DKIM_SIGERROR_INVALID_A) {
		/* a standard algorithm this build of the library lacks */
		const u_char *a = dkim_sig_gettagvalue(sig, false, (u_char *) "a");
		if (a != NULL && (strcasecmp((const char *) a, "rsa-sha256") == 0 ||
		                  strcasecmp((const char *) a, "ed25519-sha256") == 0))
			return "skip";
	}
	return "fail";
}

/*
 * Give each of the library's signatures (in its siglist order) to a header
 * field.  libopendkim builds the siglist from the DKIM-Signature fields in
 * header order, leaving out fields it could not parse at all, so a walk in
 * order pairing equal b= values is exact; a signature without b= takes the
 * next unpaired field without b=.  Fields left over keep "fail".
 */
static void pair_sigs(DKIM_SIGINFO **sigs, int nsigs, struct field *fields, int nfields)
{
	int next = 0;

	for (int s = 0; s < nsigs; s++) {
		const u_char *bv = dkim_sig_gettagvalue(sigs[s], false, (u_char *) "b");
		char *b = bv ? strip_ws((const char *) bv, strlen((const char *) bv)) : NULL;
		int found = -1;

		for (int f = next; f < nfields && found < 0; f++) {
			if (fields[f].taken)
				continue;
			if (b != NULL && fields[f].b != NULL && strcmp(b, fields[f].b) == 0)
				found = f;
			else if (b == NULL && fields[f].b == NULL)
				found = f;
		}
		if (found >= 0) {
			fields[found].taken = true;
			fields[found].verdict = sig_verdict(sigs[s]);
			next = found + 1;
		}
		free(b);
	}
}

static void report(DKIM *dkim, const char *path, const char *what, DKIM_STAT st)
{
	const char *e = dkim != NULL ? dkim_geterror(dkim) : NULL;

	fprintf(stderr, PROG ": %s: %s: %s%s%s\n", path, what,
	        dkim_getresultstr(st), e ? ": " : "", e ? e : "");
}

/*
 * The whole message through dkim_chunk(), then dkim_eom().  NULL when
 * dkim_chunk() refuses the message (e.g. a DKIM-Signature field it cannot
 * parse makes it reject the whole header block).
 */
static DKIM *verify_chunk(DKIM_LIB *lib, const char *path, unsigned char *msg, size_t len)
{
	DKIM_STAT st;
	DKIM *dkim = dkim_verify(lib, (const u_char *) path, NULL, &st);

	if (dkim == NULL) {
		report(NULL, path, "dkim_verify()", st);
		return NULL;
	}
	st = dkim_chunk(dkim, msg, len);
	if (st == DKIM_STAT_OK)
		st = dkim_chunk(dkim, NULL, 0);
	if (st != DKIM_STAT_OK) {
		dkim_free(dkim);
		return NULL;
	}
	/* BADSIG, NOKEY, NOSIG ... : per-signature results, read by the caller */
	(void) dkim_eom(dkim, NULL);
	return dkim;
}

/*
 * The way a milter feeds libopendkim: dkim_header() for each field, a field
 * the library rejects being left out (it then has no signature for it),
 * then dkim_eoh(), dkim_body(), dkim_eom().
 */
static DKIM *verify_fields(DKIM_LIB *lib, const char *path, unsigned char *msg, size_t len)
{
	DKIM_STAT st;
	DKIM *dkim = dkim_verify(lib, (const u_char *) path, NULL, &st);
	size_t pos = 0, start = 0, flen = 0;

	if (dkim == NULL) {
		report(NULL, path, "dkim_verify()", st);
		return NULL;
	}
	while (next_field(msg, len, &pos, &start, &flen)) {
		st = dkim_header(dkim, msg + start, flen);
		if (st != DKIM_STAT_OK)
			report(dkim, path, "dkim_header() rejected a field", st);
	}
	st = dkim_eoh(dkim);
	if (st != DKIM_STAT_OK && st != DKIM_STAT_NOSIG) {
		report(dkim, path, "dkim_eoh()", st);
		return dkim;                            /* no usable signature */
	}
	if (pos < len) {
		st = dkim_body(dkim, msg + pos, len - pos);
		if (st != DKIM_STAT_OK) {
			report(dkim, path, "dkim_body()", st);
			return dkim;
		}
	}
	(void) dkim_eom(dkim, NULL);
	return dkim;
}

static void verify_one(DKIM_LIB *lib, const char *path, unsigned char *msg, size_t len)
{
	int nfields = 0;
	struct field *fields = find_fields(msg, len, &nfields);
	DKIM *dkim;

	if (nfields == 0) {
		printf("%s\tnone\n", path);
		free(fields);
		return;
	}

	dkim = verify_chunk(lib, path, msg, len);
	if (dkim == NULL)
		dkim = verify_fields(lib, path, msg, len);
	if (dkim != NULL) {
		DKIM_SIGINFO **sigs = NULL;
		int nsigs = 0;
		if (dkim_getsiglist(dkim, &sigs, &nsigs) == DKIM_STAT_OK && sigs != NULL)
			pair_sigs(sigs, nsigs, fields, nfields);
		dkim_free(dkim);
	}

	printf("%s\t", path);
	for (int f = 0; f < nfields; f++) {
		printf("%s%s", f ? "," : "", fields[f].verdict);
		free(fields[f].b);
	}
	printf("\n");
	fflush(stdout);
	free(fields);
}

int main(int argc, char **argv)
{
	DKIM_LIB *lib;
	dkim_query_t qtype = DKIM_QUERY_FILE;
	unsigned int minkeybits = 1024;
	const char *keytable;
	FILE *kt;

	if (argc < 4 || strcmp(argv[1], "--keytable") != 0) {
		fprintf(stderr, "usage: %s --keytable FILE MSGFILE...\n", PROG);
		return 2;
	}
	keytable = argv[2];
	kt = fopen(keytable, "r");
	if (kt == NULL) {
		fprintf(stderr, PROG ": %s: %s\n", keytable, strerror(errno));
		return 2;
	}
	fclose(kt);
	if (strlen(keytable) >= 1024) {         /* library keeps it in a MAXPATHLEN buffer */
		fprintf(stderr, PROG ": %s: key table path too long\n", keytable);
		return 2;
	}

	lib = dkim_init(NULL, NULL);
	if (lib == NULL) {
		fprintf(stderr, PROG ": dkim_init() failed\n");
		return 2;
	}
	if (dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_QUERYMETHOD, &qtype, sizeof qtype) != DKIM_STAT_OK ||
	    dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_QUERYINFO, (void *) keytable, strlen(keytable)) != DKIM_STAT_OK ||
	    dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_MINKEYBITS, &minkeybits, sizeof minkeybits) != DKIM_STAT_OK) {
		fprintf(stderr, PROG ": dkim_options() failed\n");
		dkim_close(lib);
		return 2;
	}

	for (int i = 3; i < argc; i++) {
		size_t rawlen = 0, len = 0;
		unsigned char *raw = read_file(argv[i], &rawlen);
		if (raw == NULL) {
			fprintf(stderr, PROG ": %s: %s\n", argv[i], strerror(errno));
			dkim_close(lib);
			return 2;
		}
		unsigned char *msg = to_crlf(raw, rawlen, &len);
		free(raw);
		verify_one(lib, argv[i], msg, len);
		free(msg);
	}
	dkim_close(lib);
	return 0;
}
