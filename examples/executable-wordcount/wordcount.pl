#!/usr/bin/perl
# Example executable servable in Perl: counts words and lines of a text.
# It speaks the DLHub worker protocol (docs/worker-protocol.md): JSON lines on stdin/stdout.
use strict;
use warnings;
use JSON::PP;

$| = 1;
my $json = JSON::PP->new->canonical;
print $json->encode({ ready => JSON::PP::true }), "\n";
while (my $line = <STDIN>) {
    next unless $line =~ /\S/;
    my $request = $json->decode($line);
    my @results;
    for my $text (@{ $request->{inputs} }) {
        if (!defined $text || ref $text) {
            push @results, { error => "expected a string" };
            next;
        }
        my @words = split ' ', $text;
        my $lines = () = $text =~ /\n/g;
        push @results, { output => { words => scalar @words, lines => $lines + ($text ne '' ? 1 : 0), characters => length $text } };
    }
    print $json->encode({ batch => $request->{batch}, results => \@results }), "\n";
}
