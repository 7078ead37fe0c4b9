# frozen_string_literal: true

require "spec_helper"
require "tmpdir"
require_relative "../support/process_tree"

# `-pid FILE`: a second server started with the same FILE on the running server's port fails
# to bind (exit 1) and leaves FILE alone: it still names the running server, which removes it
# when it stops. The second server used to delete FILE as it loaded (before it tried to bind),
# so a failed restart left the running server without its pid file.
RSpec.describe "a failed second start keeps the running server's pid file" do
  include ProcessTree

  around do |example|
    Dir.mktmpdir("iodine-pidfile") do |dir|
      @pid_file = File.join(dir, "iodine.pid")
      example.run
    end
  end

  after do
    if @server
      kids = @server.exited? ? [] : children(@server.pid)
      @server.stop("KILL")
      kill_all(kids)
    end
  end

  def pid_in_file
    File.exist?(@pid_file) ? File.read(@pid_file).to_i : nil
  end

  [1, 2].each do |workers|
    it "-w #{workers}: the second server exits 1 (port in use), the file still holds the first one's pid; " \
       "the first removes it when it stops" do
      args = ["-w", workers.to_s, "-t", "1", "-pid", @pid_file, app_path("answers_ok.ru")]
      @server = ServerProcess.new(args)
      expect(wait_until(15) { pid_in_file == @server.pid }).to be(true), "no pid file:\n#{@server.log}"
      expect(http_get(@server.port, "/").body).to eq("ok")

      out, status, timed_out = run_bounded([RbConfig.ruby, "-I#{ROOT}/lib", ServerProcess::EXE,
                                            "-p", @server.port.to_s, "-b", "127.0.0.1", *args], timeout: 15)
      expect(timed_out).to be(false), "the second server did not exit:\n#{out}"
      expect(status.exitstatus).to eq(1), out
      expect(out).to match(/in use/i)
      expect(pid_in_file).to eq(@server.pid), "the pid file now holds #{pid_in_file.inspect}"

      expect(http_get(@server.port, "/").body).to eq("ok")
      expect(@server.stop("TERM")&.exitstatus).to eq(0)
      expect(File.exist?(@pid_file)).to be(false), "the pid file outlived its server"
    end
  end

  it "a server whose pid file another server (on another port) took over leaves that file when it stops" do
    args = ["-w", "1", "-t", "1", "-pid", @pid_file, app_path("answers_ok.ru")]
    @server = ServerProcess.new(args)
    expect(wait_until(15) { pid_in_file == @server.pid }).to be(true), "no pid file:\n#{@server.log}"
    @other = ServerProcess.new(args)
    expect(wait_until(15) { pid_in_file == @other.pid }).to be(true), "the second server wrote no pid file"
    expect(@server.stop("TERM")&.exitstatus).to eq(0)
    expect(pid_in_file).to eq(@other.pid), "stopping the first server removed the second one's pid file"
    expect(@other.stop("TERM")&.exitstatus).to eq(0)
    expect(File.exist?(@pid_file)).to be(false)
  ensure
    @other&.stop("KILL")
  end
end
