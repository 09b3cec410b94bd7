#!/usr/bin/perl
# tests/public-names.pl HEADER... - print each name a public header
# declares that lacks the parm_/PARM_ prefix: macros, enumerators, tags,
# typedefs, functions and variables ("FILE kind name"), comments and
# strings aside.  t_libparm wants no output.
use strict;
use warnings;
local $/;
for my $file (@ARGV) {
	open my $fh, '<', $file or die "public-names: $file: $!\n";
	my $s = <$fh>;
	$s =~ s{/\*.*?\*/}{}sg;
	$s =~ s{"(?:[^"\\]|\\.)*"}{""}g;
	my @names;
	push @names, map { "macro $_" } $s =~ /^\s*#\s*define\s+(\w+)/mg;
	while ($s =~ /\benum\s*\w*\s*\{(.*?)\}/sg) {
		push @names, map { /^\s*(\w+)/ ? "enumerator $1" : () } split /,/, $1;
	}
	push @names, map { "tag $_" } $s =~ /\b(?:struct|enum|union)\s+(\w+)/g;
	push @names, map { "typedef $_" } $s =~ /\}\s*(\w+)\s*;/g;
	push @names, map { "typedef $_" } $s =~ /^typedef\s[^;{]*?\(\s*\*\s*(\w+)\s*\)/mg;
	push @names, map { "typedef $_" } $s =~ /^typedef\s[^;{(]*?(\w+)\s*;/mg;
	push @names, map { "function $_" } $s =~ /^(?!typedef\b)[a-z_][\w\s\*]*?\b(\w+)\s*\(/mg;
	push @names, map { "variable $_" } $s =~ /^extern\s[^;(]*?(\w+)\s*;/mg;
	print "$file $_\n" for grep { !/ (parm_|PARM_)/ } @names;
}
