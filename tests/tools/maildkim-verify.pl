#!/usr/bin/perl
# SPDX-License-Identifier: MIT
#
# maildkim-verify.pl - Mail::DKIM as a separate DKIM verifier program, with
# the same interface as opendkim-verify and dkimpy-verify.py:
#
#     maildkim-verify.pl --keytable FILE MSGFILE...
#
# FILE holds one key record a line, `selector._domainkey.domain TXT-text`
# (space or tab between, TXT strings already joined; `#` comments and blank
# lines ignored; a name alone on its line is an empty TXT record).  No DNS is
# used: Mail::DKIM's resolver is replaced by one that answers TXT queries
# from FILE and NXDOMAIN for any name not listed.
#
# For each MSGFILE one line: `MSGFILE<TAB>v1,v2,...`, one verdict per
# DKIM-Signature field from the top: pass, fail, or skip (Mail::DKIM has no
# implementation of the signature's algorithm, e.g. ed25519-sha256 in
# 1.20230212); `none` when the message has no DKIM-Signature field.
# Strict mode (RFC 8301): rsa-sha1 and RSA keys under 1024 bits do not pass.
# LF line ends are turned into CRLF and a final CRLF is added if missing.
# Exit 0 when every file was processed, 2 on usage error or unreadable input.
use strict;
use warnings;

use Mail::DKIM::Verifier;
use Mail::DKIM::DNS;
use Net::DNS;

sub usage {
    print STDERR "usage: $0 --keytable FILE MSGFILE...\n";
    exit 2;
}

# --- the key table --------------------------------------------------------

sub load_keytable {
    my ($path) = @_;
    open( my $fh, '<', $path )
      or do { print STDERR "maildkim-verify: $path: $!\n"; exit 2 };
    my %keys;
    while ( my $line = <$fh> ) {
        $line =~ s/\r?\n\z//;
        next if $line =~ /^\s*(#|$)/;
        $line =~ s/^\s+//;
        my ( $name, $txt ) = split /[ \t]+/, $line, 2;
        $txt = '' unless defined $txt;
        $txt =~ s/\s+\z//;
        $name = lc $name;
        $name =~ s/\.\z//;
        $keys{$name} = $txt unless exists $keys{$name};
    }
    close $fh;
    return \%keys;
}

# --- a resolver that answers from the key table ---------------------------
#
# Mail::DKIM::DNS::query() calls $resolver->send($name, $type) and reads the
# reply's rcode and answer section, exactly as with Net::DNS::Resolver, so the
# library's own NXDOMAIN / NODATA handling stays in use.

package KeyTableResolver;

sub new {
    my ( $class, $keys ) = @_;
    return bless { keys => $keys, error => 'NOERROR' }, $class;
}

sub send {
    my ( $self, $name, $type ) = @_;
    $type = 'A' unless defined $type;
    my $key = lc $name;
    $key =~ s/\.\z//;
    my $packet = Net::DNS::Packet->new( $name, $type, 'IN' );
    $packet->header->qr(1);
    $packet->header->aa(1);
    if ( !exists $self->{keys}{$key} ) {
        $packet->header->rcode('NXDOMAIN');
    }
    elsif ( uc $type eq 'TXT' ) {
        my $txt = $self->{keys}{$key};
        # a DNS character-string holds at most 255 octets
        my @strings = length($txt) ? ( $txt =~ /(.{1,255})/gs ) : ('');
        $packet->push(
            answer => Net::DNS::RR->new(
                owner   => $name,
                type    => 'TXT',
                class   => 'IN',
                ttl     => 300,
                txtdata => \@strings,
            )
        );
    }
    # other types of a listed name: NOERROR with no answer (NODATA)
    $self->{error} = 'NOERROR';
    return $packet;
}

sub errorstring { return $_[0]->{error} }

# --- a verifier that remembers which field gave which signature -----------

package FieldTrackingVerifier;
use base 'Mail::DKIM::Verifier';

sub init {
    my $self = shift;
    $self->SUPER::init;
    $self->{dkim_fields} = [];    # one entry per DKIM-Signature field
}

sub handle_header {
    my $self = shift;
    my ($field_name) = @_;
    if ( lc($field_name) ne 'dkim-signature' ) {
        return $self->SUPER::handle_header(@_);
    }
    my $before = scalar @{ $self->{signatures} };
    my @ret    = $self->SUPER::handle_header(@_);
    # a field Mail::DKIM cannot parse at all adds no signature object
    my $sig =
      @{ $self->{signatures} } > $before ? $self->{signatures}[-1] : undef;
    push @{ $self->{dkim_fields} }, $sig;
    return @ret;
}

package main;

# algorithms of RFC 6376 / RFC 8463 that this verdict table must not call
# "fail" merely because the library has no implementation of them
my %STANDARD_ALG = map { $_ => 1 } qw(rsa-sha256 ed25519-sha256);

sub verdict {
    my ($sig) = @_;
    return 'fail' unless defined $sig;
    my $result = $sig->result;
    return 'pass' if defined $result && $result eq 'pass';
    my $alg = $sig->algorithm;
    if ( defined $alg && $STANDARD_ALG{ lc $alg } ) {
        my $class = eval { $sig->get_algorithm_class( lc $alg ) };
        return 'skip' unless $class;
    }
    return 'fail';
}

# number of DKIM-Signature fields in the header block of a CRLF message
sub count_dkim_fields {
    my ($data) = @_;
    my ($header) = split /\r\n\r\n/, "\r\n$data", 2;
    my $n = 0;
    $n++ while $header =~ /\r\nDKIM-Signature[ \t]*:/gi;
    return $n;
}

sub verify_message {
    my ($data) = @_;
    my $dkim = FieldTrackingVerifier->new( Strict => 1 );
    $dkim->PRINT($data);
    $dkim->CLOSE;
    my @fields = @{ $dkim->{dkim_fields} };
    return 'none' unless @fields;
    return join ',', map { verdict($_) } @fields;
}

usage() unless @ARGV >= 3 && $ARGV[0] eq '--keytable';
shift @ARGV;
my $keytable = shift @ARGV;
Mail::DKIM::DNS::resolver( KeyTableResolver->new( load_keytable($keytable) ) );

$| = 1;
for my $path (@ARGV) {
    my $fh;
    unless ( open( $fh, '<:raw', $path ) ) {
        print STDERR "maildkim-verify: $path: $!\n";
        exit 2;
    }
    my $data = do { local $/; <$fh> };
    close $fh;
    unless ( defined $data ) {
        print STDERR "maildkim-verify: $path: read error\n";
        exit 2;
    }
    $data =~ s/\r?\n/\r\n/g;
    $data .= "\r\n" unless $data =~ /\r\n\z/ || $data eq '';
    my $line = eval { verify_message($data) };
    unless ( defined $line ) {
        # an exception from the library for the message as a whole:
        # no signature of it passes
        chomp( my $e = $@ );
        print STDERR "maildkim-verify: $path: $e\n";
        my $n = count_dkim_fields($data);
        $line = $n ? join( ',', ('fail') x $n ) : 'none';
    }
    print "$path\t$line\n";
}
exit 0;
