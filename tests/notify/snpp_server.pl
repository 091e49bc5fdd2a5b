#!/usr/bin/perl
# A paging terminal for the SNPP tests, built on Debian's Net::SNPP::Server
# (libnet-snpp-perl): an SNPP implementation independent of ours.
#
#   snpp_server.pl [--port N] [--reject PAGER_ID]... [--login USER:PASSWORD]
#                  [--levels] [--idle-timeout SECONDS] [--lifetime SECONDS]
#
# Listens on 127.0.0.1 (port 0 = any free port) and prints
# "LISTENING <port>", then one "PAGE <json>" line per page it accepts:
# {"pager": ..., "message": ..., "subject": ..., "level": ..., "login": ...}.
# Text arrives as bytes and is decoded as UTF-8 (invalid bytes replaced).
#
# --reject makes PAGE refuse that id with Net::SNPP::Server's own
# "550 Error, Invalid Pager ID" (as it does for ids that are not 7+ digits).
# --login and --levels add LOGIn and LEVEl, which the library lists but
# leaves unimplemented (it answers "500 Command Not Implemented"): with
# --login, PAGE is refused until LOGIn has succeeded.
# --idle-timeout is the library's own Timeout: "421 Timeout, Goodbye" and a
# close after that many idle seconds.
#
# Each connection is served by a forked child.  The server makes itself a
# process group leader, so a test can stop it and every child at once with
# kill(-pid); --lifetime (default 600 s) ends the group if a test never does.

use strict;
use warnings;
use Encode qw(decode);
use Getopt::Long;
use IO::Handle;
use JSON::PP;
use POSIX qw(setsid);
use Socket qw(sockaddr_in);
use Net::SNPP::Server;

my ($port, $login, $levels, $idle_timeout, $lifetime) = (0, undef, 0, 0, 600);
my @reject;
GetOptions(
    'port=i'         => \$port,
    'reject=s'       => \@reject,
    'login=s'        => \$login,
    'levels'         => \$levels,
    'idle-timeout=i' => \$idle_timeout,
    'lifetime=i'     => \$lifetime,
) or die "usage: $0 [--port N] [--reject ID]... [--login USER:PASSWORD] [--levels] [--idle-timeout S]\n";

setsid();
STDOUT->autoflush(1);
$SIG{CHLD} = 'IGNORE';
$SIG{ALRM} = sub { kill 'KILL', -$$ };
alarm($lifetime);

my %rejected = map { $_ => 1 } @reject;
my ($user, $password) = defined $login ? split(/:/, $login, 2) : ();
my $json = JSON::PP->new->utf8->canonical;

# Per connection: each child serves exactly one.
my ($logged_in, $level);

my $server = Net::SNPP::Server->new(Port => $port, BindTo => '127.0.0.1', Timeout => $idle_timeout);
my ($bound) = sockaddr_in(getsockname($server->socket));
print "LISTENING $bound\n";

$server->callback('write_log', sub { });
$server->callback('validate_pager_id', sub {
    my ($id) = @_;
    return undef if !defined $id || $rejected{$id};
    return undef if defined $login && !$logged_in;
    # The library's default rule: digits only, at least 7 of them.
    return undef if $id =~ /\D/ || length($id) < 7;
    return $id;
});
$server->callback('process_page', sub {
    my ($pager, $page) = @_;
    my %record = (
        pager   => $pager->[0],
        message => decode('UTF-8', $page->{mess}),
        subject => defined $page->{subj} ? decode('UTF-8', $page->{subj}) : undef,
        level   => $level,
        login   => $logged_in,
    );
    print 'PAGE ', $json->encode(\%record), "\n";
    $level = undef;
    return 1;
});
if (defined $login) {
    $server->custom_command('LOGI', sub {
        my ($given_user, $given_password) = @_;
        if (defined $given_user && defined $given_password
            && $given_user eq $user && $given_password eq $password) {
            $logged_in = $given_user;
            return ('250 Login Accepted', 1);
        }
        return ('550 Error, Invalid Login', 1);
    });
}
if ($levels) {
    $server->custom_command('LEVE', sub {
        my ($given) = @_;
        if (defined $given && $given =~ /^\d+$/ && $given <= 11) {
            $level = $given + 0;
            return ('250 OK, Alternate Service Level Accepted', 1);
        }
        return ('550 Error, Invalid Service Level', 1);
    });
}

while (1) {
    my $client = $server->client();
    next unless $client->opened;
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        alarm(0);
        $server->handle_client($client);
        exit 0;
    }
    close($client);
}
