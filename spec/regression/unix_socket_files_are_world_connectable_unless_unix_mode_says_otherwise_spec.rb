# frozen_string_literal: true

require "spec_helper"
require "tmpdir"
require "json"
require_relative "../support/process_tree"

# A Unix socket file is created with mode 0777 (a proxy such as nginx, running as another
# user, must be able to connect), whatever the umask, as the C gem's since 0.7.53; it used to
# be 0755 under the usual 022 umask. `Iodine.listen(..., unix_mode: 0o660)` (or the octal
# String "660") sets another mode; an invalid one is an ArgumentError at `Iodine.listen`,
# before anything is bound.
RSpec.describe "Unix socket file modes" do
  include ProcessTree

  VALID_UNIX_MODES = {
    "http_default" => [:http, nil, 0o777],
    "raw_default" => [:raw, nil, 0o777],
    "int_660" => [:http, 0o660, 0o660],
    "string_660" => [:http, "660", 0o660],
    "string_0640" => [:raw, "0640", 0o640]
  }.freeze
  INVALID_UNIX_MODES = [0o10000, -1, "abc", "8", "0o660", 1.5].freeze

  around do |example|
    Dir.mktmpdir("iodine-unix-mode") do |dir|
      @dir = dir
      @script = File.join(dir, "modes.rb")
      File.write(@script, <<~RUBY)
        require "iodine"
        require "json"
        File.umask(0o022) # the usual one: bind(2) would make 0755 sockets
        dir = ARGV[0]
        http = ->(_env) { [200, { "content-type" => "text/plain" }, ["ok"]] }
        raw = -> { Object.new }
        modes = {}
        #{VALID_UNIX_MODES.inspect}.each do |name, (service, mode, _)|
          path = File.join(dir, "\#{name}.sock")
          options = { service: service, address: path, handler: service == :http ? http : raw }
          options[:unix_mode] = mode unless mode.nil?
          Iodine.listen(options)
          modes[name] = File.stat(path).mode & 0o7777
        end
        invalid = {}
        #{INVALID_UNIX_MODES.inspect}.each_with_index do |mode, i|
          path = File.join(dir, "invalid\#{i}.sock")
          begin
            Iodine.listen(service: :http, address: path, handler: http, unix_mode: mode)
            invalid[mode.inspect] = "no error"
          rescue ArgumentError => e
            invalid[mode.inspect] = "ArgumentError"
          rescue StandardError => e
            invalid[mode.inspect] = "\#{e.class}: \#{e.message}"
          end
          invalid[mode.inspect] += " (a socket file was created)" if File.exist?(path)
        end
        $stdout.puts "RESULT \#{JSON.generate(modes: modes, invalid: invalid)}"
        $stdout.flush
        Iodine.threads = 1
        Iodine.workers = 1
        Iodine.run_after(20_000) { Iodine.stop } # a bound, should the spec not stop it
        Iodine.start
      RUBY
      example.run
    end
  end

  after { @server&.stop("KILL") }

  def get_over(path)
    socket = UNIXSocket.new(path)
    socket.write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    read_for(socket, 5).first[/\A[^\r]*/]
  ensure
    socket&.close
  end

  it "0777 by default (HTTP and raw listeners, umask 022), unix_mode: 0o660 / \"660\" / \"0640\" as asked; " \
     "the sockets answer and are removed at the stop" do
    @server = ServerProcess.new(nil, script: [@script, @dir], wait_for: nil)
    line = @server.log_with(/^RESULT .*$/, 15)[/^RESULT (.*)$/, 1]
    expect(line).not_to be_nil, @server.log
    result = JSON.parse(line)
    expected = VALID_UNIX_MODES.transform_values { |(_, _, mode)| format("%04o", mode) }
    expect(result["modes"].transform_values { |mode| format("%04o", mode) }).to eq(expected)
    # The HTTP ones serve once the server started.
    http_paths = VALID_UNIX_MODES.select { |_, (service, _, _)| service == :http }.keys.map { |n| File.join(@dir, "#{n}.sock") }
    answered = wait_until(15) { get_over(http_paths.first) == "HTTP/1.1 200 OK" rescue false } # rubocop:disable Style/RescueModifier
    expect(answered).to be(true), @server.log
    expect(http_paths.map { |path| get_over(path) }.uniq).to eq(["HTTP/1.1 200 OK"])
    expect(@server.stop("TERM")&.exitstatus).to eq(0)
    expect(Dir.glob(File.join(@dir, "*.sock"))).to eq([])
  end

  it "an invalid unix_mode (#{INVALID_UNIX_MODES.map(&:inspect).join(', ')}) is an ArgumentError at " \
     "Iodine.listen, and nothing is bound" do
    @server = ServerProcess.new(nil, script: [@script, @dir], wait_for: nil)
    line = @server.log_with(/^RESULT .*$/, 15)[/^RESULT (.*)$/, 1]
    expect(line).not_to be_nil, @server.log
    invalid = JSON.parse(line)["invalid"]
    expect(invalid).to eq(INVALID_UNIX_MODES.to_h { |mode| [mode.inspect, "ArgumentError"] })
    expect(@server.stop("TERM")&.exitstatus).to eq(0)
  end

  it "exe/iodine -b PATH -w 2 (umask 022): the cluster's socket file is 0777" do
    path = File.join(@dir, "cli.sock")
    exec_iodine = "File.umask(0o022); exec(RbConfig.ruby, #{"-I#{ROOT}/lib".inspect}, #{ServerProcess::EXE.inspect}, *ARGV)"
    @server = ServerProcess.new(nil, wait_for: nil,
                                     script: ["-e", exec_iodine, "--", "-w", "2", "-t", "1", "-b", path, app_path("answers_ok.ru")])
    answered = wait_until(20) { get_over(path) == "HTTP/1.1 200 OK" rescue false } # rubocop:disable Style/RescueModifier
    expect(answered).to be(true), @server.log
    expect(format("%04o", File.stat(path).mode & 0o7777)).to eq("0777")
    expect(@server.stop("TERM")&.exitstatus).to eq(0)
  end
end
